"""What reads finished runs: `cord evaluate` (`compare.py`), `cord export` (`export.py`) and
`cord report` (`report/`), each through the one `Record` type."""
