"""The lab: real mariadbd servers across network namespaces, plus Mosquitto and etcd.

``python -m sim.lab up|down|status|stop-node|start-node|sweep --workdir DIR``; see control.py.
"""
