"""The `customer-import` command-line client: it speaks HTTP to the gateway only."""
