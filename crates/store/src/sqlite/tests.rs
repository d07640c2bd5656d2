use super::*;

fn put(kind: &str, rg: &str, name: &str, body: &str) -> Write {
    Write {
        kind: kind.into(),
        key: Key::new(rg, name),
        body: Some(body.into()),
    }
}

#[test]
fn revisions_count_commits_and_skip_no_ops() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
    assert_eq!(store.revision().unwrap(), 0);
    let ((), rev) = store
        .transact(|_| Ok::<_, StoreError>(((), vec![put("k", "RG", "A", "{}")])))
        .unwrap();
    assert_eq!(rev, 1);
    let ((), rev) = store
        .transact(|_| Ok::<_, StoreError>(((), vec![])))
        .unwrap();
    assert_eq!(rev, 1, "an empty transaction is not a revision");
    let rec = store.get("k", "rg", "a").unwrap().unwrap();
    assert_eq!(rec.body, "{}");
    assert_eq!(store.list("k", Some("Rg")).unwrap().len(), 1);
    assert_eq!(store.list("k", Some("other")).unwrap().len(), 0);
}

#[test]
fn failed_transaction_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
    #[derive(Debug)]
    struct Nope;
    impl From<StoreError> for Nope {
        fn from(_: StoreError) -> Self {
            Nope
        }
    }
    let r: Result<((), u64), Nope> = store.transact(|_| Err(Nope));
    assert!(r.is_err());
    assert_eq!(store.revision().unwrap(), 0);
    assert!(store.snapshot().unwrap().records.is_empty());
}

#[test]
fn deletes_remove_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
    store
        .transact(|_| {
            Ok::<_, StoreError>(((), vec![put("k", "rg", "a", "1"), put("k", "rg", "b", "2")]))
        })
        .unwrap();
    let del = Write {
        kind: "k".into(),
        key: Key::new("rg", "a"),
        body: None,
    };
    let ((), rev) = store
        .transact(|_| Ok::<_, StoreError>(((), vec![del])))
        .unwrap();
    assert_eq!(rev, 2);
    let snap = store.snapshot().unwrap();
    assert_eq!(snap.records.len(), 1);
    assert_eq!(snap.records[0].key.name, "b");
}
