"""Studies: protocols made of several runs and their reports (above the runner and the report layers).

- :mod:`.compare`: models side by side (ε curve, noise suite, latent metrics, fusion attacks);
- :mod:`.defenses`: the defenses study behind ``robustaudio defend``.
"""
