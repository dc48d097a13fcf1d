"""Django code that only the benchmark image holds: copied into it by bench/Dockerfile, never imported here."""
