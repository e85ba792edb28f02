//! One key exchange's arithmetic per method: the client's key generation, the server's answer
//! and the client's finish, as a connection start pays them (host key signatures excluded).
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use sshvpn_proto::rng::Random;
use sshvpn_proto::transport::kex::KexAlg;

fn exchange(c: &mut Criterion) {
    let mut group = c.benchmark_group("kex");
    for kex in KexAlg::ALL {
        let mut rng = Random::from_seed([1; 32]);
        group.bench_function(kex.name(), |b| {
            b.iter(|| {
                let (client, q_c) = kex.client_start(&mut rng);
                let (q_s, _) = kex.server_answer(&mut rng, &q_c).unwrap();
                black_box(client.finish(&q_s).unwrap());
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = exchange
}
criterion_main!(benches);
