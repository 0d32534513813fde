from .bag_of_words import BagOfWords
from .digits import Digits
from .dsprites import DSprites, default_cache_dir
from .fashion_mnist import FashionMNIST
from .ground_truth_dataset import GroundTruthDataset, as_random_state
from .idx import read_idx
from .image_folder import ImageFolder
from .labelled_dataset import LabelledDataset
from .mnist import MNIST, POOLED_HELD_OUT_SIZE
from .observation_dataset import ObservationDataset
from .shapes3d import Shapes3D

__all__ = [
    "BagOfWords",
    "DSprites",
    "Digits",
    "FashionMNIST",
    "GroundTruthDataset",
    "ImageFolder",
    "LabelledDataset",
    "MNIST",
    "ObservationDataset",
    "POOLED_HELD_OUT_SIZE",
    "Shapes3D",
    "as_random_state",
    "default_cache_dir",
    "read_idx",
]
