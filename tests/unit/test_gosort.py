"""go_sort sorts correctly; its tie order is checked against etcd by the differential test."""

import random

from kine_py.mvcc.gosort import go_sort


def test_sorts_like_sorted_for_every_size() -> None:
    rng = random.Random(7)
    for n in [*range(60), 100, 257, 1000]:
        data = [rng.randrange(max(1, n // 3)) for _ in range(n)]
        out = list(data)
        go_sort(out, lambda a, b: a < b)
        assert out == sorted(data)


def test_small_slices_use_shell_pass_then_insertion_which_is_not_stable() -> None:
    # Go's shell pass (gap 6) swaps elements 0 and 6, carrying (2, "a") behind
    # (2, "b"); insertion sort then keeps that order: equal keys come out swapped.
    data = [(2, "a"), (2, "b"), (3, ""), (3, ""), (3, ""), (3, ""), (1, "")]
    go_sort(data, lambda a, b: a[0] < b[0])
    assert data[:3] == [(1, ""), (2, "b"), (2, "a")]


def test_heapsort_fallback_is_exercised_for_adversarial_input() -> None:
    data = list(range(2000, 0, -1)) * 3
    go_sort(data, lambda a, b: a < b)
    assert data == sorted(data)
