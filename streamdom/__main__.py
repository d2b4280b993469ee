"""`python -m streamdom`: see streamdom.cli."""

if __name__ == "__main__":
    # Imported here, not at the top: the flusher process (multiprocessing's spawn) imports this
    # module as its __mp_main__, and must not pay for the server's imports (~0.5 s of CPU).
    from streamdom.cli import main

    main()
