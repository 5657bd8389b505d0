"""BIOMETRICS ETL shared core."""
