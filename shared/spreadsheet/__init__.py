"""Spreadsheets: upload checks and readers (csv, calamine, the compiled stream reader), where the table is
(detect), header matching and value evidence, mapping, names, the preview, cell rules and writers (xlsx)."""
