//! The store's tests, on both backends: each runs on a SQLite file in a
//! temporary directory, and `every_store_test_on_postgres` runs them all
//! again, each on a database of its own in a throwaway PostgreSQL cluster
//! (Debian's `postgresql`, as `.ci/run` installs it).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use super::db::vals;
use super::*;
use cutover_common::labels::Labels;
use cutover_common::throwaway_pg::ThrowawayPg;

thread_local! {
    /// Set while the cases run on PostgreSQL (on the runner's thread).
    static PG: RefCell<Option<Rc<ThrowawayPg>>> = const { RefCell::new(None) };
    static DATABASES: Cell<u32> = const { Cell::new(0) };
}

/// Where a case's store lives; reopened by [`Place::reopen`].
enum Place {
    Sqlite(#[allow(dead_code)] tempfile::TempDir, PathBuf),
    Postgres(Location),
}

impl Place {
    fn reopen(&self) -> Store {
        match self {
            Place::Sqlite(_, p) => Store::open(p).unwrap(),
            Place::Postgres(l) => Store::open_at(l).unwrap(),
        }
    }
}

/// A fresh store: a SQLite file, or a new database of the PostgreSQL
/// cluster the runner started.
fn store() -> (Place, Store) {
    let pg = PG.with(|p| p.borrow().clone());
    let place = match pg {
        None => {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("db");
            Place::Sqlite(dir, p)
        }
        Some(pg) => {
            let n = DATABASES.with(|d| {
                d.set(d.get() + 1);
                d.get()
            });
            let name = format!("case{n}");
            pg.create_db(&name);
            let t = PgTarget::new(&pg.url(&name), Some(&pg.password_file()), None).unwrap();
            Place::Postgres(Location::Postgres(t))
        }
    };
    let s = place.reopen();
    (place, s)
}

/// Runs `sql` (SQLite's or PostgreSQL's) and reads one integer.
fn count(s: &Store, sql: &str) -> i64 {
    s.with(|c| c.row(sql, &[])?.unwrap().get(0)).unwrap()
}

fn host(id: &str) -> HostRecord {
    HostRecord {
        id: id.into(),
        token_labels: Labels::new(),
        agent_labels: Labels::new(),
        state: "enrolled".into(),
        enrolled_at: 1,
        token_id: "t1".into(),
        last_seen: None,
        agent_version: String::new(),
        address: String::new(),
        boot_id: String::new(),
        facts: HostFacts::default(),
        cert_serial: "01".into(),
        cert_not_after: 10,
        prev_cert_serial: String::new(),
    }
}

fn token(uses: u32, expires_at: i64) -> TokenRecord {
    TokenRecord {
        id: "t1".into(),
        secret_hash: "h".into(),
        labels: cutover_common::labels::parse("role=web").unwrap(),
        created_at: 0,
        expires_at,
        uses_total: uses,
        uses_left: uses,
        created_by: "operator:admin".into(),
    }
}

/// A store with host `a` enrolled.
fn store_with_host_a() -> (Place, Store) {
    let (d, s) = store();
    s.with(|c| {
        insert_token(c, &token(1, 100))?;
        enroll_with_token(c, "t1", "h", &host("a"), "k-a", 1)?.unwrap();
        Ok(())
    })
    .unwrap();
    (d, s)
}

#[test]
fn a_single_use_token_admits_one_host_and_binds_its_labels() {
    let (_d, s) = store();
    s.with(|c| {
        insert_token(c, &token(1, 100))?;
        let labels = enroll_with_token(c, "t1", "h", &host("a"), "k-a", 50)?
            .unwrap()
            .labels;
        assert_eq!(labels.get("role").map(String::as_str), Some("web"));
        assert_eq!(
            enroll_with_token(c, "t1", "h", &host("b"), "k-b", 50)?,
            Err(TokenRefusal::Used { id: "t1".into() })
        );
        let hosts = list_hosts(c)?;
        assert_eq!(hosts.len(), 1);
        assert_eq!(
            hosts[0].labels().get("role").map(String::as_str),
            Some("web")
        );
        Ok(())
    })
    .unwrap();
}

#[test]
fn expired_unknown_and_wrong_secret_tokens_change_nothing() {
    let (_d, s) = store();
    s.with(|c| {
        insert_token(c, &token(3, 100))?;
        assert_eq!(
            enroll_with_token(c, "t1", "h", &host("a"), "k-a", 100)?,
            Err(TokenRefusal::Expired { id: "t1".into() })
        );
        assert_eq!(
            enroll_with_token(c, "nope", "h", &host("a"), "k-a", 1)?,
            Err(TokenRefusal::Unknown)
        );
        assert_eq!(
            enroll_with_token(c, "t1", "x", &host("a"), "k-a", 1)?,
            Err(TokenRefusal::Unknown)
        );
        assert!(list_hosts(c)?.is_empty());
        Ok(())
    })
    .unwrap();
}

#[test]
fn a_host_id_cannot_be_enrolled_twice() {
    let (_d, s) = store();
    s.with(|c| {
        insert_token(c, &token(3, 100))?;
        enroll_with_token(c, "t1", "h", &host("a"), "k-a", 1)?.unwrap();
        // Another key: another machine claiming the name.
        assert!(matches!(
            enroll_with_token(c, "t1", "h", &host("a"), "k-other", 1)?,
            Err(TokenRefusal::HostExists { .. })
        ));
        Ok(())
    })
    .unwrap();
}

#[test]
fn the_same_enrolment_asked_again_is_answered_without_using_the_token_again() {
    let (_d, s) = store();
    s.with(|c| {
        insert_token(c, &token(1, 100))?;
        assert!(!host_exists(c, "a")?);
        let first = enroll_with_token(c, "t1", "h", &host("a"), "k-a", 1)?.unwrap();
        assert!(!first.again);
        assert!(host_exists(c, "a")?);
        // Its answer was lost; the host asks again with the same key.
        let mut renewed = host("a");
        renewed.cert_serial = "02".into();
        renewed.cert_not_after = 20;
        let again = enroll_with_token(c, "t1", "h", &renewed, "k-a", 2)?.unwrap();
        assert_eq!(
            again,
            Enrolled {
                labels: first.labels.clone(),
                again: true
            }
        );
        let stored = list_hosts(c)?;
        assert_eq!(stored.len(), 1);
        assert_eq!(
            (stored[0].cert_serial.as_str(), stored[0].cert_not_after),
            ("02", 20)
        );
        let uses_left: u32 = c
            .row("SELECT uses_left FROM tokens WHERE id = 't1'", &[])?
            .unwrap()
            .get(0)?;
        assert_eq!(uses_left, 0, "used once");
        // Not once the token has expired, nor with another token or
        // key, nor once the host has opened a session.
        assert_eq!(
            enroll_with_token(c, "t1", "h", &renewed, "k-a", 100)?,
            Err(TokenRefusal::Expired { id: "t1".into() })
        );
        assert!(matches!(
            enroll_with_token(c, "t1", "h", &renewed, "k-b", 3)?,
            Err(TokenRefusal::HostExists { .. })
        ));
        let mut t2 = token(1, 100);
        t2.id = "t2".into();
        insert_token(c, &t2)?;
        assert!(matches!(
            enroll_with_token(c, "t2", "h", &renewed, "k-a", 3)?,
            Err(TokenRefusal::HostExists { .. })
        ));
        c.exec("UPDATE hosts SET boot_id = 'b1' WHERE id = 'a'", &[])?;
        assert!(matches!(
            enroll_with_token(c, "t1", "h", &renewed, "k-a", 3)?,
            Err(TokenRefusal::HostExists { .. })
        ));
        // Removed, it is gone; its token's use stays used.
        assert!(delete_host(c, "a")?);
        assert!(!host_exists(c, "a")?);
        assert_eq!(
            enroll_with_token(c, "t1", "h", &renewed, "k-a", 3)?,
            Err(TokenRefusal::Used { id: "t1".into() })
        );
        Ok(())
    })
    .unwrap();
}

fn result(id: &str) -> BatchedWrite {
    BatchedWrite::CommandResult {
        host: "a".into(),
        id: id.into(),
        ok: true,
        message: "done".into(),
        result_json: "{}".into(),
        finished_at: 5,
    }
}

fn stored_results(s: &Store) -> i64 {
    count(s, "SELECT COUNT(*) FROM commands")
}

#[tokio::test]
async fn writes_queued_together_share_a_commit_and_all_land() {
    let (_d, s) = store_with_host_a();
    let mut writes: Vec<BatchedWrite> = (0..2000).map(|i| result(&format!("c{i}"))).collect();
    let mut a = host("a");
    a.state = "ready".into();
    writes.push(BatchedWrite::Host(a));
    s.write_all(writes).await.unwrap();
    assert_eq!(stored_results(&s), 2000);
    let hosts = s.with(|c| list_hosts(c)).unwrap();
    assert_eq!(hosts[0].state, "ready");
}

#[tokio::test]
async fn a_host_seen_moves_its_stored_last_seen_forward_only() {
    let (_d, s) = store_with_host_a();
    let seen = |at_ms| BatchedWrite::Seen {
        host: "a".into(),
        at_ms,
    };
    let stored = || s.with(|c| list_hosts(c)).unwrap()[0].last_seen;
    s.write_all(vec![seen(50)]).await.unwrap();
    assert_eq!(stored(), Some(50));
    // An older time (a session record written meanwhile) is kept.
    s.write_all(vec![seen(40)]).await.unwrap();
    assert_eq!(stored(), Some(50));
    s.write_all(vec![seen(60)]).await.unwrap();
    assert_eq!(stored(), Some(60));
}

#[tokio::test]
async fn one_bad_write_fails_only_its_own_caller() {
    let (_d, s) = store();
    s.with(|c| {
        match c.dialect() {
            Dialect::Sqlite => {
                c.exec(
                    "CREATE TRIGGER refuse BEFORE INSERT ON commands WHEN NEW.id = 'bad'
                     BEGIN SELECT RAISE(ABORT, 'refused by test'); END;",
                    &[],
                )?;
            }
            Dialect::Postgres => {
                c.exec(
                    "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
                     BEGIN IF NEW.id = 'bad' THEN RAISE EXCEPTION 'refused by test'; END IF;
                     RETURN NEW; END $$",
                    &[],
                )?;
                c.exec(
                    "CREATE TRIGGER refuse BEFORE INSERT ON commands
                     FOR EACH ROW EXECUTE FUNCTION refuse()",
                    &[],
                )?;
            }
        }
        Ok(())
    })
    .unwrap();
    // Queued at once, so the three land in one batch first.
    let (x, y, z) = tokio::join!(
        s.write(result("ok-1")),
        s.write(result("bad")),
        s.write(result("ok-2"))
    );
    assert!(x.is_ok() && z.is_ok(), "{x:?} {z:?}");
    let e = y.unwrap_err().to_string();
    assert!(e.contains("refused by test"), "{e}");
    assert_eq!(stored_results(&s), 2);
}

#[test]
fn the_store_persists_across_reopen() {
    let (place, s) = store();
    s.with(|c| insert_token(c, &token(1, 100))).unwrap();
    drop(s);
    let s = place.reopen();
    s.with(|c| {
        enroll_with_token(c, "t1", "h", &host("a"), "k-a", 1)?.unwrap();
        Ok(())
    })
    .unwrap();
}

#[test]
fn every_active_phase_is_resumed_after_a_restart_and_no_finished_one() {
    let (_d, s) = store();
    let finished = ["succeeded", "failed", "rolled_back", "aborted"];
    s.with(|c| {
        for (i, phase) in ACTIVE_PHASES.iter().chain(&finished).enumerate() {
            insert_deployment(
                c,
                &DeploymentRecord {
                    seq: i as i64 + 1,
                    id: format!("d{}", i + 1),
                    service: format!("s{i}"),
                    version: "1".into(),
                    spec_toml: String::new(),
                    artifact_url: String::new(),
                    artifact_sha256: String::new(),
                    rollout_json: "{}".into(),
                    phase: phase.to_string(),
                    created_by: "t".into(),
                    created_at: 1,
                    finished_at: None,
                    commit_time: None,
                    environment: String::new(),
                    rollback_of: None,
                },
            )?;
        }
        let resumed: Vec<String> = active_deployments(c)?
            .into_iter()
            .map(|d| d.phase)
            .collect();
        assert_eq!(resumed, ACTIVE_PHASES, "a recreate stopping its hosts too");
        // The newest deployment of a service in an environment, whatever
        // its phase; none elsewhere.
        let live = format!("d{}", ACTIVE_PHASES.len() + 1);
        let service = get_deployment(c, &live)?.unwrap().service;
        assert_eq!(newest_in(c, &service, "")?, Some(live.clone()));
        assert_eq!(newest_in(c, "s0", "")?, Some("d1".into()), "s0 is staging");
        assert_eq!(newest_in(c, "s0", "production")?, None);
        assert_eq!(newest_in(c, "nothing", "")?, None);
        Ok(())
    })
    .unwrap();
}

#[test]
fn retention_drops_old_details_and_rows_but_never_a_running_or_recent_deployment() {
    let (_d, s) = store();
    let dep = |seq: i64, service: &str, finished: Option<i64>| DeploymentRecord {
        seq,
        id: format!("d{seq}"),
        service: service.into(),
        version: seq.to_string(),
        spec_toml: "service = \"x\"".into(),
        artifact_url: String::new(),
        artifact_sha256: String::new(),
        rollout_json: "{\"big\": true}".into(),
        phase: if finished.is_some() {
            "succeeded"
        } else {
            "rolling"
        }
        .into(),
        created_by: "t".into(),
        created_at: seq,
        finished_at: finished,
        commit_time: None,
        environment: String::new(),
        rollback_of: None,
    };
    s.with(|c| {
        // web: ten old finished ones, then one running; db: one old.
        for seq in 1..=10 {
            insert_deployment(c, &dep(seq, "web", Some(seq * 10)))?;
        }
        insert_deployment(c, &dep(11, "web", None))?;
        insert_deployment(c, &dep(12, "db", Some(5)))?;
        for i in 0..5 {
            audit(
                c,
                i,
                &Audit {
                    actor: "a".into(),
                    action: "x",
                    target: String::new(),
                    outcome: Outcome::Ok,
                    detail: String::new(),
                },
            )?;
        }
        // Details go for those finished before 60 but the newest 3 of
        // each service; summaries for those finished before 30.
        let p = prune(c, 60, 3, 30, 0, 3)?;
        assert_eq!(p.audit, 3);
        let rows = list_deployments(c, "", 100)?;
        let ids: Vec<&str> = rows.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "d12", "d11", "d10", "d9", "d8", "d7", "d6", "d5", "d4", "d3"
            ]
        );
        let with_details: Vec<&str> = rows
            .iter()
            .filter(|d| !d.rollout_json.is_empty())
            .map(|d| d.id.as_str())
            .collect();
        // d11 runs, d10 and d9 are web's newest, d12 db's only one; d6
        // finished at 60 (not before), d7, d8 after.
        assert_eq!(with_details, ["d12", "d11", "d10", "d9", "d8", "d7", "d6"]);
        assert_eq!(p.deployments, 2, "d1, d2");
        // Again: nothing more.
        assert_eq!(prune(c, 60, 3, 30, 0, 3)?, Pruned::default());
        // The DORA rows: summaries only, from a given time.
        let changes = list_changes(c, "web", 70)?;
        let ids: Vec<&str> = changes.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["d7", "d8", "d9", "d10", "d11"]);
        Ok(())
    })
    .unwrap();
}

#[test]
fn a_request_id_is_claimed_once_answered_from_the_store_and_kept_per_caller() {
    let (_d, s) = store();
    s.with(|c| {
        let claim = |c: &mut Conn, who: &str, id: &str, method: &str, digest: &[u8], now| {
            claim_request(c, who, id, method, digest, now)
        };
        assert_eq!(claim(c, "op:a", "r1", "RemoveHost", b"x", 0)?, Claim::New);
        // A retry while the first is running is told so.
        assert_eq!(
            claim(c, "op:a", "r1", "RemoveHost", b"x", 1_000)?,
            Claim::Running
        );
        // Another caller's r1 is another request.
        assert_eq!(
            claim(c, "op:b", "r1", "RemoveHost", b"x", 1_000)?,
            Claim::New
        );
        finish_request(c, "op:a", "r1", Some(b"answer"))?;
        assert_eq!(
            claim(c, "op:a", "r1", "RemoveHost", b"x", 2_000)?,
            Claim::Done(b"answer".to_vec())
        );
        // The same id with other arguments, or for another call: refused.
        assert_eq!(
            claim(c, "op:a", "r1", "RemoveHost", b"y", 2_000)?,
            Claim::Other {
                method: "RemoveHost".into()
            }
        );
        assert_eq!(
            claim(c, "op:a", "r1", "CreateToken", b"x", 2_000)?,
            Claim::Other {
                method: "RemoveHost".into()
            }
        );
        // A failed call is forgotten: its retry runs again.
        finish_request(c, "op:b", "r1", None)?;
        assert_eq!(
            claim(c, "op:b", "r1", "RemoveHost", b"x", 3_000)?,
            Claim::New
        );
        // One left running by a coordinator that died is run again later.
        assert_eq!(
            claim(
                c,
                "op:b",
                "r1",
                "RemoveHost",
                b"x",
                3_000 + STALE_REQUEST_MS
            )?,
            Claim::New
        );
        Ok(())
    })
    .unwrap();
}

#[test]
fn the_live_blue_green_group_is_read_from_its_column_per_environment() {
    let (_d, s) = store();
    s.with(|c| {
        let mut add = |seq: i64, env: &str| {
            insert_deployment(
                c,
                &DeploymentRecord {
                    seq,
                    id: format!("d{seq}"),
                    service: "web".into(),
                    version: "1".into(),
                    spec_toml: String::new(),
                    artifact_url: String::new(),
                    artifact_sha256: String::new(),
                    rollout_json: "{}".into(),
                    phase: "succeeded".into(),
                    created_by: "t".into(),
                    created_at: seq,
                    finished_at: Some(seq),
                    commit_time: None,
                    environment: env.into(),
                    rollback_of: None,
                },
            )
        };
        add(1, "production")?;
        add(2, "production")?;
        add(3, "staging")?;
        update_deployment(c, "d1", "{}", "succeeded", Some(1), Some("blue"))?;
        update_deployment(c, "d3", "{}", "succeeded", Some(3), Some("green"))?;
        // A newer deployment that decided no group leaves the older one.
        update_deployment(c, "d2", "{}", "failed", Some(2), None)?;
        assert_eq!(live_group(c, "web", "production")?, Some("blue".into()));
        assert_eq!(live_group(c, "web", "staging")?, Some("green".into()));
        assert_eq!(live_group(c, "web", "")?, None);
        // The SQLite migration's backfill reads stored rollouts with
        // SQLite's JSON.
        if c.dialect() == Dialect::Sqlite {
            let v: String = c
                .row(
                    "SELECT json_extract('{\"live_group_after\":\"blue\"}', '$.live_group_after')",
                    &[],
                )?
                .unwrap()
                .get(0)?;
            assert_eq!(v, "blue");
        }
        Ok(())
    })
    .unwrap();
}

#[test]
fn a_sent_command_is_recorded_with_who_sent_it_even_when_its_result_came_first() {
    let (_d, s) = store();
    s.with(|c| {
        let row = |c: &mut Conn, id: &str| -> Result<(String, String, String), StoreError> {
            let r = c
                .row(
                    "SELECT deployment_id, kind, sent_by FROM commands WHERE id = ?1",
                    vals![id],
                )?
                .unwrap();
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        };
        command_sent(c, "d1-stage-0", "web-1", "d1", "stage", "deployment d1", 1)?;
        command_result(c, "web-1", "d1-stage-0", true, "ok", "{}", 2)?;
        assert_eq!(
            row(c, "d1-stage-0")?,
            ("d1".into(), "stage".into(), "deployment d1".into())
        );
        // The result first (a fast agent), then the record of sending.
        command_result(c, "web-1", "d1-activate-0", true, "ok", "{}", 3)?;
        command_sent(
            c,
            "d1-activate-0",
            "web-1",
            "d1",
            "activate",
            "deployment d1",
            2,
        )?;
        assert_eq!(
            row(c, "d1-activate-0")?,
            ("d1".into(), "activate".into(), "deployment d1".into())
        );
        // Sent again (a re-send): the first record stays.
        command_sent(
            c,
            "d1-activate-0",
            "web-1",
            "d1",
            "activate",
            "someone else",
            9,
        )?;
        assert_eq!(row(c, "d1-activate-0")?.2, "deployment d1");
        Ok(())
    })
    .unwrap();
}

#[test]
fn the_deployed_services_are_listed_with_their_environment_and_strategy() {
    let (_d, s) = store();
    let rec = |seq: i64, service: &str, env: &str, strategy: &str| DeploymentRecord {
        seq,
        id: format!("d{seq}"),
        service: service.into(),
        version: "1".into(),
        spec_toml: String::new(),
        artifact_url: String::new(),
        artifact_sha256: String::new(),
        rollout_json: format!("{{\"strategy\":\"{strategy}\"}}"),
        phase: "succeeded".into(),
        created_by: "t".into(),
        created_at: seq,
        finished_at: Some(seq),
        commit_time: None,
        environment: env.into(),
        rollback_of: None,
    };
    s.with(|c| {
        insert_deployment(c, &rec(1, "web", "", "rolling"))?;
        insert_deployment(c, &rec(2, "web", "", "rolling"))?;
        insert_deployment(c, &rec(3, "api", "production", "blue_green"))?;
        // Pruned by retention: its rollout is gone.
        let mut old = rec(4, "old", "", "rolling");
        old.rollout_json = String::new();
        insert_deployment(c, &old)
    })
    .unwrap();
    let mut got = s.with(|c| deployed_services(c)).unwrap();
    got.sort();
    assert_eq!(
        got,
        vec![
            (
                "api".to_string(),
                "production".to_string(),
                "blue_green".to_string()
            ),
            ("web".into(), "".into(), "rolling".into()),
        ]
    );
}

/// Every case above, each on a database of its own in one throwaway
/// PostgreSQL cluster: same semantics on both backends.
#[test]
fn every_store_test_on_postgres() {
    let Some(pg) = ThrowawayPg::start_or_skip() else {
        return;
    };
    PG.with(|p| *p.borrow_mut() = Some(Rc::new(pg)));
    let cases: &[(&str, fn())] = &[
        (
            "a_single_use_token_admits_one_host_and_binds_its_labels",
            a_single_use_token_admits_one_host_and_binds_its_labels,
        ),
        (
            "expired_unknown_and_wrong_secret_tokens_change_nothing",
            expired_unknown_and_wrong_secret_tokens_change_nothing,
        ),
        (
            "a_host_id_cannot_be_enrolled_twice",
            a_host_id_cannot_be_enrolled_twice,
        ),
        (
            "the_same_enrolment_asked_again_is_answered_without_using_the_token_again",
            the_same_enrolment_asked_again_is_answered_without_using_the_token_again,
        ),
        (
            "writes_queued_together_share_a_commit_and_all_land",
            writes_queued_together_share_a_commit_and_all_land,
        ),
        (
            "a_host_seen_moves_its_stored_last_seen_forward_only",
            a_host_seen_moves_its_stored_last_seen_forward_only,
        ),
        (
            "one_bad_write_fails_only_its_own_caller",
            one_bad_write_fails_only_its_own_caller,
        ),
        (
            "the_store_persists_across_reopen",
            the_store_persists_across_reopen,
        ),
        (
            "every_active_phase_is_resumed_after_a_restart_and_no_finished_one",
            every_active_phase_is_resumed_after_a_restart_and_no_finished_one,
        ),
        (
            "retention_drops_old_details_and_rows_but_never_a_running_or_recent_deployment",
            retention_drops_old_details_and_rows_but_never_a_running_or_recent_deployment,
        ),
        (
            "a_request_id_is_claimed_once_answered_from_the_store_and_kept_per_caller",
            a_request_id_is_claimed_once_answered_from_the_store_and_kept_per_caller,
        ),
        (
            "the_live_blue_green_group_is_read_from_its_column_per_environment",
            the_live_blue_green_group_is_read_from_its_column_per_environment,
        ),
        (
            "a_sent_command_is_recorded_with_who_sent_it_even_when_its_result_came_first",
            a_sent_command_is_recorded_with_who_sent_it_even_when_its_result_came_first,
        ),
        (
            "the_deployed_services_are_listed_with_their_environment_and_strategy",
            the_deployed_services_are_listed_with_their_environment_and_strategy,
        ),
    ];
    for (name, case) in cases {
        eprintln!("on PostgreSQL: {name}");
        case();
    }
    // The cluster stops here (dropped on this thread).
    PG.with(|p| p.borrow_mut().take());
}

/// A store on its own database of a throwaway PostgreSQL (None where it
/// is not installed) and two campaigners with leases of `ttl`: `a` leads
/// (its term), `b` stands by naming it.
async fn two_campaigners(
    db: &str,
    ttl: std::time::Duration,
) -> Option<(
    ThrowawayPg,
    PgTarget,
    Store,
    crate::leader::Lease,
    u64,
    crate::leader::Lease,
)> {
    use crate::leader::{Lease, LeaseState, Member};
    use std::time::Duration;
    let pg = ThrowawayPg::start_or_skip()?;
    pg.create_db(db);
    let t = PgTarget::new(&pg.url(db), Some(&pg.password_file()), None).unwrap();
    let s = Store::open_at(&Location::Postgres(t.clone())).unwrap();
    let a = Lease::start(t.clone(), Member::new("a", "https://a.example:7443"), ttl).unwrap();
    let term = tokio::time::timeout(Duration::from_secs(10), a.leading())
        .await
        .expect("a leads");
    let b = Lease::start(t.clone(), Member::new("b", "https://b.example:7443"), ttl).unwrap();
    let mut bw = b.watch();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !matches!(
            &*bw.borrow_and_update(),
            LeaseState::Standby { leader: Some(_) }
        ) {
            bw.changed().await.unwrap();
        }
    })
    .await
    .expect("b stands by");
    Some((pg, t, s, a, term, b))
}
/// Fencing and the leader lease, on a real PostgreSQL: a second
/// coordinator stands by naming the leader; when the leader stops renewing
/// the other takes the lease with a new term, and the deposed leader's
/// writes are refused (nothing it writes lands after the new term began).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_the_lease_passes_on_with_a_new_term_and_the_old_terms_writes_are_refused() {
    use crate::leader::LeaseState;
    use std::time::Duration;
    let Some((_pg, t, s, a, term_a, b)) = two_campaigners("lease", Duration::from_secs(1)).await
    else {
        return;
    };
    // b stands by, naming a.
    let LeaseState::Standby { leader: Some(seen) } = b.state() else {
        panic!("{:?}", b.state())
    };
    assert_eq!(
        (seen.name.as_str(), seen.address.as_str(), seen.term),
        ("a", "https://a.example:7443", term_a)
    );
    // The leader's writes pass while its term holds.
    s.fence(term_a);
    s.with(|c| insert_token(c, &token(1, 100))).unwrap();
    // a stops renewing (it died): b takes over, in a new term.
    drop(a);
    let term_b = tokio::time::timeout(Duration::from_secs(10), b.leading())
        .await
        .expect("b takes over");
    assert_eq!(term_b, term_a + 1);
    // a's store handle, still fenced with its old term: refused, in a
    // transaction, a plain write and a batched write alike.
    let mut t2 = token(1, 100);
    t2.id = "t2".into();
    let e = s.with(|c| insert_token(c, &t2)).unwrap_err();
    assert!(
        matches!(e, StoreError::Fenced { term } if term == term_a),
        "{e}"
    );
    let e = s
        .with(|c| {
            let mut tx = c.transaction()?;
            insert_token(&mut tx, &t2)?;
            tx.commit()
        })
        .unwrap_err();
    assert!(matches!(e, StoreError::Fenced { .. }), "{e}");
    let e = s.write(result("late")).await.unwrap_err().to_string();
    assert!(e.contains("not the leader"), "{e}");
    // b's handle writes.
    let sb = Store::open_at(&Location::Postgres(t)).unwrap();
    sb.fence(term_b);
    sb.with(|c| insert_token(c, &t2)).unwrap();
    assert_eq!(count(&sb, "SELECT COUNT(*) FROM tokens"), 2);
    assert_eq!(count(&sb, "SELECT COUNT(*) FROM commands"), 0);
}

/// A leader whose database session ends (its process died) is replaced at
/// once, not when its lease runs out; while the session lives, the
/// standby's checks leave it the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_leader_whose_session_ended_is_replaced_before_its_lease_runs_out() {
    use crate::leader::LeaseState;
    use std::time::{Duration, Instant};
    // A lease far longer than this test may take.
    let ttl = Duration::from_secs(120);
    let Some((_pg, _t, _s, a, term_a, b)) = two_campaigners("gone", ttl).await else {
        return;
    };
    let mut bw = b.watch();
    bw.borrow_and_update();
    // Several of b's checks (a quarter of a second each): a keeps it.
    let kept = tokio::time::timeout(Duration::from_secs(2), bw.changed()).await;
    assert!(kept.is_err(), "b changed while a led: {:?}", b.state());
    assert!(matches!(a.state(), LeaseState::Leader { term, .. } if term == term_a));
    // a's process ends: its session with it.
    let died = Instant::now();
    drop(a);
    let term_b = tokio::time::timeout(Duration::from_secs(30), b.leading())
        .await
        .expect("b takes over long before a's lease of 2 minutes runs out");
    assert_eq!(term_b, term_a + 1);
    assert!(died.elapsed() < ttl / 4, "{:?}", died.elapsed());
}

/// A leader's long transaction (a large group commit under load) holds up
/// neither its own renewals nor the standbys' rounds: the lease stays
/// with it. (Standbys that locked the lease row each round queued the
/// leader's renewals behind its own writes, and leaders stepped down.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_leaders_long_write_does_not_cost_it_the_lease() {
    use crate::leader::LeaseState;
    use std::time::Duration;
    let Some((_pg, _t, s, a, term, b)) = two_campaigners("hold", Duration::from_secs(1)).await
    else {
        return;
    };
    s.fence(term);
    // A fenced transaction held open for three leases.
    let s2 = s.clone();
    tokio::task::spawn_blocking(move || {
        s2.with(|c| {
            let mut tx = c.transaction()?;
            insert_token(&mut tx, &token(1, 100))?;
            std::thread::sleep(Duration::from_secs(3));
            tx.commit()
        })
    })
    .await
    .unwrap()
    .unwrap();
    match a.state() {
        LeaseState::Leader {
            term: t,
            valid_until,
        } => {
            assert_eq!(t, term);
            assert!(valid_until > std::time::Instant::now(), "a's lease ran out");
        }
        other => panic!("a lost the lease: {other:?}"),
    }
    assert!(
        matches!(b.state(), LeaseState::Standby { .. }),
        "{:?}",
        b.state()
    );
}
