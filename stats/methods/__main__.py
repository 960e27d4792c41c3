"""`python -m stats.methods ANALYSIS FILE.csv [options]`: run one trial analysis and print JSON."""
from stats.methods.cli import main

raise SystemExit(main())
