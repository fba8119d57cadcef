"""What every benchmark tool measures: shapes, inputs, byte and FLOP counts, models, and the one timing helper."""
