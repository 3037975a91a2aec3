"""The paper's tables as runnable suites: `python -m experiments.run SUITE --root R`
plans and runs them, `python -m experiments.collect R` tabulates them beside the
paper's numbers. See experiments/suites/ for what each suite runs."""
