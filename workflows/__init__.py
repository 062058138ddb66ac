"""How people drive the system: the command line, the local runner and the Argo workflow."""
