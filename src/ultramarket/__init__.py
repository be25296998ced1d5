"""UltraMarket: an open-source e-commerce backend."""
