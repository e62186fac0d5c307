"""Experiments that live on a dbx server, seen through the same objects as local ones.

``client.py`` speaks HTTP (stdlib only: dbx stays light); ``experiment.py`` is an
:class:`~squeezr.dbx.store.Experiment` read from a record instead of a folder;
``repository.py`` is a server as a :class:`~squeezr.dbx.store.Repository` look-alike
(``--repo URL``); ``shipper.py`` streams a local experiment to a server while it runs.
"""
