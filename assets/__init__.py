"""assets layer of Integration Hub."""
