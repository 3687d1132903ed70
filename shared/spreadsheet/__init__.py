"""Spreadsheets: upload checks, readers (csv, calamine, the compiled stream reader), headers, mapping,
preview, cell rules and writers (xlsx, csv)."""
