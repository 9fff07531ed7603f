use std::collections::VecDeque;

use bytes::Bytes;

use super::value::{List, SHORT_LIST};
use super::*;

#[test]
fn globs() {
    assert!(glob_match(b"*", b"abc", false));
    assert!(glob_match(b"a*c", b"abbbc", false));
    assert!(!glob_match(b"a*c", b"abbbd", false));
    assert!(glob_match(b"h?llo", b"hello", false));
    assert!(glob_match(b"h[ae]llo", b"hallo", false));
    assert!(!glob_match(b"h[^e]llo", b"hello", false));
    assert!(glob_match(b"h[a-b]llo", b"hbllo", false));
    assert!(glob_match(b"h[b-a]llo", b"hbllo", false));
    assert!(glob_match(b"h\\*llo", b"h*llo", false));
    assert!(!glob_match(b"h\\*llo", b"hallo", false));
    assert!(glob_match(b"*a*b*", b"xxaxxbxx", false));
    assert!(glob_match(b"", b"", false));
    assert!(!glob_match(b"", b"a", false));
    assert!(glob_match(b"**", b"", false));
    assert!(glob_match(b"a[", b"a[", false) || !glob_match(b"a[", b"a[", false));
    // Pathological: linear-ish, no blow-up.
    let s = vec![b'a'; 2000];
    let mut p = b"*a".repeat(30);
    p.push(b'b');
    assert!(!glob_match(&p, &s, false));
}

/// (items to push, or to pop if negative; at the front?; an index to read)
fn list_steps() -> impl proptest::strategy::Strategy<Value = Vec<(i32, bool, usize)>> {
    proptest::collection::vec((-12i32..=12, proptest::bool::ANY, 0usize..200), 0..400)
}

proptest::proptest! {
    /// A list behaves as a `VecDeque` through both representations and the changes between
    /// them, and a clone (a frozen copy's) keeps its items when the original changes.
    #[test]
    fn list_is_a_deque(steps in list_steps()) {
        let mut list = List::default();
        let mut model = VecDeque::new();
        let mut kept: Option<(List, VecDeque<Bytes>)> = None;
        for (i, (delta, front, at)) in steps.into_iter().enumerate() {
            for n in 0..delta.unsigned_abs() {
                if delta > 0 {
                    let item = Bytes::from(format!("{i}.{n}"));
                    list.push(item.clone(), front);
                    if front { model.push_front(item) } else { model.push_back(item) }
                } else {
                    let want = if front { model.pop_front() } else { model.pop_back() };
                    proptest::prop_assert_eq!(list.pop(front), want);
                }
            }
            proptest::prop_assert_eq!(list.len(), model.len());
            proptest::prop_assert!(list.iter().eq(model.iter()));
            proptest::prop_assert_eq!(list.get(at), model.get(at));
            let (from, to) = (at.min(model.len()), (at + 7).min(model.len()));
            proptest::prop_assert!(list.range(at, at + 7).eq(model.range(from..to)));
            if i % 50 == 10 {
                kept = Some((list.clone(), model.clone()));
            }
            if let Some((k, m)) = &kept {
                proptest::prop_assert!(k.iter().eq(m.iter()), "a clone changed with the original");
            }
        }
    }
}

#[test]
fn list_changes_representation_at_the_bounds() {
    let mut l = List::default();
    for i in 0..SHORT_LIST {
        l.push(Bytes::from(i.to_string()), false);
    }
    assert!(matches!(l, List::Short(_)));
    l.push(Bytes::from_static(b"x"), true);
    assert!(matches!(l, List::Long(_)));
    while l.len() > SHORT_LIST / 4 + 1 {
        l.pop(false);
    }
    assert!(matches!(l, List::Long(_)));
    assert_eq!(l.pop(true), Some(Bytes::from_static(b"x")));
    assert!(matches!(l, List::Short(_)));
    assert_eq!(l.len(), SHORT_LIST / 4);
    assert!(l.iter().map(|b| b.to_vec()).eq((0..SHORT_LIST / 4).map(|i| i.to_string().into_bytes())));
}

#[test]
fn key_hash_is_fixed() {
    assert_eq!(key_hash(b""), key_hash(b""));
    assert_ne!(key_hash(b"a"), key_hash(b"b"));
    assert_ne!(key_hash(b"x"), 0);
}
