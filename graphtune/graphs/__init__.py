"""Graphs graphtune ships: the example traffic workflow now; the controller and support_qa join it."""
