"""What reads finished runs: `cord evaluate` (`compare.py`), `cord export` (`export/`) and
`cord report` (`report/`), each through the one `Record` type."""
