"""The scheduler's decisions apart from Ray: what is left per row, which shards the decode
window holds, which group a worker takes."""

from hrnet_eval.policy import Work, choose_group, row_groups
from hrnet_eval.store import Unit
from hrnet_eval.window import DecodeWindow

A, B = "hrnet-w18", "hrnet-w48"
SHARDS = [(0, 4), (4, 8), (8, 12), (12, 16)]


def work():
    return Work({A: [Unit(A, *k) for k in SHARDS], B: [Unit(B, *k) for k in SHARDS[1:]]})


def test_rows_are_sent_in_order_and_put_back_in_front():
    w = work()
    assert w.next_send([A, B], lambda key: True) == ((0, 4), [A])
    w.take([A], (0, 4))
    assert w.next_send([A, B], lambda key: True) == ((4, 8), [A, B])  # one call, both rows
    w.take([A, B], (4, 8))
    assert w.next_send([A, B], lambda key: key != (8, 12)) is None  # head not open yet
    w.put_back([A, B], (4, 8))  # its worker died
    assert w.todo[A][0] == (4, 8) and w.todo[B][0] == (4, 8) and w.needed((4, 8))


def test_a_stopped_row_is_neither_sent_nor_put_back():
    w = work()
    w.stop(B, "non-finite logits")
    assert not w.has(B) and w.waiting[(12, 16)] == {A}
    w.put_back([A, B], (0, 4))
    assert B not in w.todo and w.failed == {B: "non-finite logits"}


def test_window_wants_ready_rows_first_then_a_head_start():
    w = work()
    # A ready, B loading: A's shards first, B-only shards after (none here: B's are A's too).
    assert w.wanted({A}, {B}, size=2) == [(0, 4), (4, 8)]
    w.take([A], (0, 4))
    w.take([A], (4, 8))
    # Only B (loading) still needs (4, 8): it comes after A's next ones.
    assert w.wanted({A}, {B}, size=2) == [(8, 12), (12, 16), (4, 8)]
    assert w.wanted(set(), {B}, size=2) == [(4, 8), (8, 12), (12, 16)]


def test_window_evicts_what_only_loading_rows_want_and_counts_decoding_twice():
    opened = []
    window = DecodeWindow(2, lambda key: opened.append(key) or [key])
    window.update([(0, 4), (4, 8)], lambda key: True)
    assert set(window.refs) == {(0, 4), (4, 8)}
    window.update([(4, 8), (8, 12)], lambda key: True)  # full: (0, 4) makes room
    assert set(window.refs) == {(4, 8), (8, 12)} and window.decoded_twice == 0
    window.update([(0, 4)], lambda key: key != (8, 12))  # (8, 12) done; (0, 4) again
    assert set(window.refs) == {(0, 4), (4, 8)}
    assert opened == [(0, 4), (4, 8), (8, 12), (0, 4)]
    assert (window.decoded, window.decoded_twice) == (16, 4)


def test_groups_and_the_group_a_worker_takes():
    assert row_groups([A, B, "c"], 2) == [(A, B), ("c",)]
    w = work()
    flops = {A: 1, B: 10}
    groups = [(A,), (B,)]
    assert choose_group((), groups, [], w, flops) == (B,)  # most work left
    # work left: A 16 images x 1, B 12 images x 10, shared by the workers holding it
    assert choose_group((), groups, [(B,)] * 6, w, flops) == (B,)  # 120 / 7 > 16
    assert choose_group((), groups, [(B,)] * 7, w, flops) == (A,)  # 120 / 8 < 16
    assert choose_group((A,), groups, [], w, flops) == (A,)  # keeps its group while it has work
    w.stop(A, "x")
    assert choose_group((A,), groups, [], w, flops) == (B,)
