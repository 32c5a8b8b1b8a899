"""Go 1.16's ``sort.Sort``, so that sorted Range results tie-break exactly as etcd 3.5's do.

etcd sorts Range results with ``sort.Sort`` (not stable): keys with equal sort
values come out in the order that algorithm leaves them. The reference etcd
3.5.1 is built with Go 1.16, whose ``sort.Sort`` is an introsort: quicksort
with a ninther pivot and a duplicate-protecting partition, heapsort past a
depth limit, and for slices of at most 12 elements one shell-sort pass with
gap 6 followed by insertion sort. This module implements that algorithm over
a Python list with a ``less(a, b)`` function; the result, ties included, is
the one Go produces.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
Less = Callable[[T, T], bool]


def go_sort(data: list[T], less: Less[T]) -> None:
    """Sort ``data`` in place exactly as Go 1.16's ``sort.Sort`` would."""
    n = len(data)
    _quick_sort(data, less, 0, n, _max_depth(n))


def _max_depth(n: int) -> int:
    depth = 0
    while n > 0:
        depth += 1
        n >>= 1
    return depth * 2


def _swap(data: list[T], i: int, j: int) -> None:
    data[i], data[j] = data[j], data[i]


def _insertion_sort(data: list[T], less: Less[T], a: int, b: int) -> None:
    for i in range(a + 1, b):
        j = i
        while j > a and less(data[j], data[j - 1]):
            _swap(data, j, j - 1)
            j -= 1


def _sift_down(data: list[T], less: Less[T], lo: int, hi: int, first: int) -> None:
    root = lo
    while True:
        child = 2 * root + 1
        if child >= hi:
            return
        if child + 1 < hi and less(data[first + child], data[first + child + 1]):
            child += 1
        if not less(data[first + root], data[first + child]):
            return
        _swap(data, first + root, first + child)
        root = child


def _heap_sort(data: list[T], less: Less[T], a: int, b: int) -> None:
    first, hi = a, b - a
    for i in range((hi - 1) // 2, -1, -1):
        _sift_down(data, less, i, hi, first)
    for i in range(hi - 1, -1, -1):
        _swap(data, first, first + i)
        _sift_down(data, less, 0, i, first)


def _median_of_three(data: list[T], less: Less[T], m1: int, m0: int, m2: int) -> None:
    if less(data[m1], data[m0]):
        _swap(data, m1, m0)
    if less(data[m2], data[m1]):
        _swap(data, m2, m1)
        if less(data[m1], data[m0]):
            _swap(data, m1, m0)


def _choose_pivot(data: list[T], less: Less[T], lo: int, hi: int) -> int:
    m = (lo + hi) >> 1
    if hi - lo > 40:
        s = (hi - lo) // 8
        _median_of_three(data, less, lo, lo + s, lo + 2 * s)
        _median_of_three(data, less, m, m - s, m + s)
        _median_of_three(data, less, hi - 1, hi - 1 - s, hi - 1 - 2 * s)
    _median_of_three(data, less, lo, m, hi - 1)
    return m


def _do_pivot(data: list[T], less: Less[T], lo: int, hi: int) -> tuple[int, int]:
    """Partition [lo, hi) around data[lo]; return the bounds of the pivot-equal middle."""
    m = _choose_pivot(data, less, lo, hi)
    pivot = lo
    a, c = lo + 1, hi - 1
    while a < c and less(data[a], data[pivot]):
        a += 1
    b = a
    while True:
        while b < c and not less(data[pivot], data[b]):
            b += 1
        while b < c and less(data[pivot], data[c - 1]):
            c -= 1
        if b >= c:
            break
        _swap(data, b, c - 1)
        b += 1
        c -= 1
    protect = hi - c < 5
    if not protect and hi - c < (hi - lo) // 4:
        dups = 0
        if not less(data[pivot], data[hi - 1]):
            _swap(data, c, hi - 1)
            c += 1
            dups += 1
        if not less(data[b - 1], data[pivot]):
            b -= 1
            dups += 1
        if not less(data[m], data[pivot]):
            _swap(data, m, b - 1)
            b -= 1
            dups += 1
        protect = dups > 1
    if protect:
        while True:
            while a < b and not less(data[b - 1], data[pivot]):
                b -= 1
            while a < b and less(data[a], data[pivot]):
                a += 1
            if a >= b:
                break
            _swap(data, a, b - 1)
            a += 1
            b -= 1
    _swap(data, pivot, b - 1)
    return b - 1, c


def _quick_sort(data: list[T], less: Less[T], a: int, b: int, max_depth: int) -> None:
    while b - a > 12:
        if max_depth == 0:
            _heap_sort(data, less, a, b)
            return
        max_depth -= 1
        mlo, mhi = _do_pivot(data, less, a, b)
        if mlo - a < b - mhi:
            _quick_sort(data, less, a, mlo, max_depth)
            a = mhi
        else:
            _quick_sort(data, less, mhi, b, max_depth)
            b = mlo
    if b - a > 1:
        for i in range(a + 6, b):
            if less(data[i], data[i - 6]):
                _swap(data, i, i - 6)
        _insertion_sort(data, less, a, b)
