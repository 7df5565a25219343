"""The program simulator: drives the real product through a fleet's missions in simulated time.

``manage.py simulate_program`` runs it. The fleet (``fleet``) keeps its own record of what it
did; ``truth`` computes the SLIs from that record alone and ``compare`` sets them against what
the SLA engine measured. See the README's "Program simulation" section.
"""
