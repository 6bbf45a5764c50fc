"""``python -m robustaudio ...``: the same as the ``robustaudio`` command."""

from .cli import main

if __name__ == "__main__":
    main(prog_name="robustaudio")
