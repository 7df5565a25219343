"""Vehicle workload identity (SPIFFE X.509-SVIDs): trust domains and bundles per carrier, SVID checks."""
