"""Content-addressed transport: local CIDs, stores (a directory or Kubo), and a verified download cache.

    file ──hash_file──▶ FileDigest(cid, sha256, size)      one streaming read, CID as Kubo computes it
    file ──Store.add_file──▶ LocalStore blobs/<cid> | Kubo (returned CID checked against the local one)
    cid  ──Cache.fetch──▶ $HDDM_HOME/cache/blobs/<cid>/<name>   visible only after size, sha256, CID match

Manifests name artifacts by (cid, sha256, size); nothing is loaded before ``Cache.verify`` passes.
"""
