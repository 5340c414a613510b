"""Rates: the average price per day of a lane, price batches committed whole, the dump's
tables and a persistent cache of answers."""
