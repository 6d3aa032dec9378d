"""Semantic clustering: the partition of a dataset that experts specialise on.

Images stream from webdataset shards or folders (``_reader``) through a feature extractor
(``features``: DINOv2, CLIP, downsampled pixels, or precomputed) into resumable feature shards
(``extract``), are clustered with faiss k-means, flat or hierarchical (``kmeans``), and each cluster
gets a contact-sheet PNG (``contact_sheet``). ``assign`` labels new features by their nearest
centroid, which is how a stranger's data is split by the centroids published in expert manifests::

    from hddm_p2p.cluster import ClusterJob, run_clustering
    summary = run_clustering(ClusterJob("data/train-*.tar.gz", Path("clusters"), k=8, features="pixels",
                                        levels="64:8"))
"""

from hddm_p2p.cluster.assign import load_centroids, nearest_centroid, save_centroids
from hddm_p2p.cluster.extract import FeatureSet, extract_features, load_features
from hddm_p2p.cluster.features import FeatureExtractor, PixelExtractor, extractor_from_id, make_extractor
from hddm_p2p.cluster.kmeans import Clustering, KMeansConfig, cluster_features
from hddm_p2p.cluster.pipeline import ClusterJob, run_clustering

__all__ = ["load_centroids", "nearest_centroid", "save_centroids", "FeatureSet", "extract_features", "load_features",
           "FeatureExtractor", "PixelExtractor", "extractor_from_id", "make_extractor", "Clustering", "KMeansConfig",
           "cluster_features", "ClusterJob", "run_clustering"]
