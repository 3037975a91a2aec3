"""The miniature BiT: pre-training, the offline demo, the transfer-table suite's probe."""
