"""resources layer of Integration Hub."""
