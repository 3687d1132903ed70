"""The arq worker that imports uploaded spreadsheets. Run it with `python -m worker`."""
