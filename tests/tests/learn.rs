//! `learn(...)` through the in-memory datapath: Kubernetes session affinity
//! by client IP, built the way Antrea builds it (a select group picks an
//! endpoint and learns a rule that pins the client to it), with the 86400 s
//! timeout OpenFlow's 16-bit timeouts cannot express.

use datapath::MemDatapath;
use oxvs_tests::{always_emc, datapath, Pkt};

const VIP: [u8; 4] = [10, 96, 0, 10];

/// Three endpoints behind ports 2, 3 and 4; `learn` decides whether the
/// chosen endpoint is remembered for the client.
fn service(affinity: bool) -> String {
    let learn = if affinity {
        "learn(table=1,hard_timeout=86400,priority=100,eth_type=0x800,\
         NXM_OF_IP_SRC[],load:NXM_NX_REG3[]->NXM_NX_REG3[]),"
    } else {
        ""
    };
    let bucket = |p: u32| format!("bucket=actions=load:{p}->NXM_NX_REG3[],{learn}resubmit(,2)");
    format!(
        "table=0,priority=10,tcp,in_port=1,nw_dst=10.96.0.10,tp_dst=80,actions=resubmit(,1),resubmit(,2)\n\
         table=2,priority=20,tcp,reg3=0,actions=group:1\n\
         table=2,priority=10,tcp,reg3=2,actions=output:2\n\
         table=2,priority=10,tcp,reg3=3,actions=output:3\n\
         table=2,priority=10,tcp,reg3=4,actions=output:4\n\
         group_id=1,type=select,{},{},{}\n",
        bucket(2),
        bucket(3),
        bucket(4)
    )
}

/// Which ports the connections from `client` (source ports 1000..1000+n)
/// came out of.
fn endpoints(dp: &mut MemDatapath, client: [u8; 4], n: u16, now: u64) -> Vec<u32> {
    let mut seen = Vec::new();
    for sport in 1000..1000 + n {
        assert!(dp.inject(1, &Pkt::tcp(client, VIP, sport, 80).build(0)));
        dp.run_until_idle(now);
        for port in 2..=4 {
            if !dp.take_tx(port).is_empty() {
                seen.push(port);
            }
        }
    }
    seen
}

#[test]
fn without_affinity_connections_spread_over_endpoints() {
    let mut dp = datapath(4, &service(false), always_emc());
    let mut seen = endpoints(&mut dp, [10, 244, 1, 2], 30, 0);
    assert_eq!(seen.len(), 30);
    seen.sort_unstable();
    seen.dedup();
    assert!(
        seen.len() > 1,
        "30 connections all went to one endpoint: {seen:?}"
    );
}

#[test]
fn affinity_pins_a_client_to_one_endpoint_for_a_day() {
    let mut dp = datapath(4, &service(true), always_emc());
    let a = endpoints(&mut dp, [10, 244, 1, 2], 30, 0);
    assert_eq!(a.len(), 30);
    assert!(a.iter().all(|p| *p == a[0]), "client A moved: {a:?}");

    // The learned rule, as dump-flows would show it.
    let learned: Vec<String> = dp
        .bridge
        .cls
        .table(1)
        .rules()
        .map(|r| ctl::ofp::format_rule(r, 0, &()))
        .collect();
    assert_eq!(learned.len(), 1, "{learned:?}");
    assert!(learned[0].contains("hard_timeout=86400"), "{}", learned[0]);
    assert!(learned[0].contains("nw_src=10.244.1.2"), "{}", learned[0]);

    // Other clients get their own endpoint, also kept.
    let mut firsts = vec![a[0]];
    for c in 3..12u8 {
        let e = endpoints(&mut dp, [10, 244, 1, c], 5, 1000);
        assert!(e.iter().all(|p| *p == e[0]), "client {c} moved: {e:?}");
        firsts.push(e[0]);
    }
    firsts.sort_unstable();
    firsts.dedup();
    assert!(firsts.len() > 1, "every client on one endpoint: {firsts:?}");

    // Still pinned just before the day is over; forgotten after it.
    let day_ms = 86_400_000;
    dp.bridge.expire(day_ms - 1);
    assert_eq!(dp.bridge.cls.table(1).rules().count(), 10);
    dp.bridge.expire(day_ms + 1001);
    assert_eq!(dp.bridge.cls.table(1).rules().count(), 0);
}

/// Each learned rule is a rule change, and a poll thread revalidates its
/// megaflows after it. Only those whose translation looked up the table the
/// rule went into are translated again: traffic that never reaches table 1
/// keeps its megaflows untouched however many clients arrive.
#[test]
fn learning_retranslates_only_megaflows_of_the_learned_table() {
    let other = "table=0,priority=5,in_port=5,actions=output:1\n";
    let mut dp = datapath(5, &(service(true) + other), always_emc());
    for sport in 0..8u16 {
        let p = Pkt::tcp([10, 244, 9, 9], [10, 244, 1, 2], 2000 + sport, 80 + sport);
        assert!(dp.inject(5, &p.build(0)));
    }
    dp.run_until_idle(0);
    assert_eq!(dp.take_tx(1).len(), 8);
    let bystanders = dp.pmd.megaflows.len() as u64;
    assert!(bystanders > 0);
    let before = dp.pmd.stats;
    for c in 1..=20u8 {
        assert_eq!(endpoints(&mut dp, [10, 244, 1, c], 2, 0).len(), 2);
    }
    let after = dp.pmd.stats;
    let revalidations = after.revalidations - before.revalidations;
    assert!(revalidations >= 20, "one per learned rule at least");
    assert!(
        after.revalidation_skipped - before.revalidation_skipped >= revalidations * bystanders,
        "{bystanders} megaflows of port 5 were translated again: {after:?}"
    );
    assert!(after.revalidated_flows > before.revalidated_flows);
    // The bystanders still forward.
    let p = Pkt::tcp([10, 244, 9, 9], [10, 244, 1, 2], 2000, 80).build(0);
    assert!(dp.inject(5, &p));
    dp.run_until_idle(0);
    assert_eq!(dp.take_tx(1), [p]);
}

#[test]
fn learn_prints_back_as_written() {
    let lines = [
        "ip,actions=learn(table=1,hard_timeout=86400,priority=100,dl_type=0x800,nw_src[],load:reg3[]->reg3[])",
        "ip,actions=learn(table=5,idle_timeout=30,cookie=0x7,dl_type=0x800,nw_dst[]=nw_src[],nw_proto=6,reg1[0..15]=0x1f,load:0x2a->reg2[],output:in_port[])",
    ];
    oxvs_tests::assert_prints_back(&lines);
}

#[test]
fn bad_learn_specs_name_their_column() {
    let cases = [
        ("tcp,actions=learn(table=1,nw_src[]=tp_src[])", "bits"),
        ("ip,actions=learn(table=1,load:reg3[]->reg4[0..7])", "bits"),
        ("ip,actions=learn(table=1,delete_learned)", "not supported"),
        ("ip,actions=learn(table=300)", "table"),
        ("ip,actions=learn(table=1,bogus[])", "unknown field"),
        ("ip,actions=learn(table=1,load:0x1ff->reg3[0..7])", "reg3"),
    ];
    oxvs_tests::assert_refused(&cases, 12);
}
