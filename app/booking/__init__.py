"""Reserve -> hold -> confirm, with MySQL as the truth and Redis as the fast gate."""
