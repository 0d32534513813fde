"""scikit-learn's bundled 8 x 8 handwritten digits."""

import torch

from .labelled_dataset import _LabelledImages


class Digits(_LabelledImages):
    """
    The 1,797 8 x 8 handwritten digits bundled with scikit-learn
    (:func:`sklearn.datasets.load_digits`, a copy of the UCI optical recognition test set), as
    ``(1, 8, 8)`` float32 images in [0, 1] (grey levels 0 to 16 divided by 16), with the digit as
    the one known factor. Needs no file.

    >>> dataset = Digits()
    >>> len(dataset), dataset.observation_shape, dataset.factors_of([0]).tolist()
    (1797, (1, 8, 8), [[0]])

    :param bool binarize: observe pixels as 0 or 1 (grey level above 8) instead of grey levels.
    :param bool return_factors: make items ``(observation, factors, index)``.
    :param device: where the images are kept and observations are returned (default CPU).
    :type device: str or torch.device or None

    References

    [1] E. Alpaydin, C. Kaynak, "Optical Recognition of Handwritten Digits", UCI Machine Learning
        Repository, 1998
    """

    factor_names = ("digit",)
    factor_sizes = (10,)
    class_names = tuple(str(digit) for digit in range(10))

    def __init__(
        self,
        *,
        binarize: bool = False,
        return_factors: bool = False,
        device: str | torch.device | None = None,
    ) -> None:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        super().__init__(
            bunch.images.astype("uint8"),
            bunch.target,
            max_value=16,
            binarize=binarize,
            return_factors=return_factors,
            device=device,
        )
