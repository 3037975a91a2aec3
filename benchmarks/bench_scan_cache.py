"""The folder scan with and without W/scan_cache.json, on a folder of photos.

  .venv/bin/python benchmarks/bench_scan_cache.py                  # 600 photos
  .venv/bin/python benchmarks/bench_scan_cache.py --images 600 --repeats 3

Writes `--images` JPEG crops of photos (benchmarks/bench_data.py's write_folder, at
the 512/480 setting's 375x500), then times in the same run:
  - no cache: folder.scan decoding every image (what every start did before);
  - first start: the same inside scan_cache.kept_in (decodes all, writes the cache);
  - second start: again with the cache written (decodes nothing new).
Each figure is the best of `--repeats`; the first start is timed on a fresh cache
each time.
"""

import argparse
import os
import shutil
import tempfile
import time

from bench_data import SETTINGS, write_folder
from bit_train.data.sources import folder as folders
from bit_train.data.sources import scan_cache


def timed(fn):
  began = time.perf_counter()
  fn()
  return time.perf_counter() - began


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--images", type=int, default=600)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    root = write_folder(os.path.join(tmp, "photos"), args.images, SETTINGS["512/480"])
    workdir = os.path.join(tmp, "w")
    os.makedirs(workdir)

    def scan():
      folders.scan(root, holdout_fraction=0.1)

    def cached_scan():
      with scan_cache.kept_in(workdir):
        scan()

    scan()  # TensorFlow's first tf.data pass, outside the timings
    plain, first, second = [], [], []
    for _ in range(args.repeats):
      plain.append(timed(scan))
      shutil.rmtree(workdir)
      os.makedirs(workdir)
      first.append(timed(cached_scan))
      second.append(timed(cached_scan))
    size = os.path.getsize(os.path.join(workdir, scan_cache.FILE))
  print(f"{args.images} photos (375x500 JPEG), best of {args.repeats}:")
  print(f"  no cache      {min(plain):.3f} s")
  print(f"  first start   {min(first):.3f} s  (writes {scan_cache.FILE}, {size:,} bytes)")
  print(f"  second start  {min(second):.3f} s  ({min(plain) / min(second):.0f}x faster "
        "than no cache)")


if __name__ == "__main__":
  main()
