"""Carrier onboarding: invitations, the carrier portal and the carrier's profile (README "Carrier onboarding")."""
