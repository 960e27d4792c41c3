"""The demo: its model (trained on synthetic phantoms), the two demo trials and their simulated reading and scoring.
Installed in development, demo and test settings only (CXR_DEMO); production images carry none of it."""
