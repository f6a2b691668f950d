"""The neural field: the SIREN, its initialisations, its derivatives, the trained field and its checkpoint."""
