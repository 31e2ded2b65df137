//! Equal values shared between cache entries, so that a full cache of service accounts
//! holds their few distinct group lists and reasons once each.

use std::{
    collections::HashSet,
    hash::Hash,
    sync::{Arc, Mutex},
};

use super::lock;

/// Shares equal values between cache entries: service accounts all carry the same few
/// groups, and most allows give the same RBAC reason. Bounded: past `limit` distinct
/// values, new ones are handed out unshared rather than remembered.
pub(crate) struct Interner<T: ?Sized> {
    seen: Mutex<HashSet<Arc<T>>>,
    limit: usize,
}

impl<T: ?Sized + Eq + Hash> Interner<T>
where
    for<'a> Arc<T>: From<&'a T>,
{
    /// An interner remembering at most `limit` distinct values.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            seen: Mutex::default(),
            limit,
        }
    }

    /// A shared copy of `value`.
    pub(crate) fn intern(&self, value: &T) -> Arc<T> {
        let mut seen = lock(&self.seen);
        if let Some(shared) = seen.get(value) {
            return Arc::clone(shared);
        }
        let shared = Arc::from(value);
        if seen.len() < self.limit {
            seen.insert(Arc::clone(&shared));
        }
        shared
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interned_values_are_shared_up_to_the_limit() {
        let interner = Interner::<str>::new(2);
        let a = interner.intern("a");
        assert!(Arc::ptr_eq(&a, &interner.intern("a")));
        interner.intern("b");
        let c = interner.intern("c");
        assert_eq!(&*c, "c");
        assert!(
            !Arc::ptr_eq(&c, &interner.intern("c")),
            "over the limit: not kept"
        );
        let groups = Interner::<[String]>::new(8);
        let list = ["system:authenticated".to_owned()];
        assert!(Arc::ptr_eq(&groups.intern(&list), &groups.intern(&list)));
    }
}
