"""After export: fine-tune a student on the data (`train.py`) and measure it (`evaluate.py`)."""
