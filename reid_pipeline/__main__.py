"""`python -m reid_pipeline` runs the CLI (what `./reid` does). Started this way, worker
processes (face embedding) do not import the CLI again when they start."""

from reid_pipeline.cli import main

if __name__ == "__main__":
    main()
