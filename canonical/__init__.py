"""canonical layer of Integration Hub."""
