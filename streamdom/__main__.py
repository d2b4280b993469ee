"""`python -m streamdom`: see streamdom.cli."""

from streamdom.cli import main

if __name__ == "__main__":
    main()
