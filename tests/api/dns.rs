//! A small DNS server on a loopback UDP port, for custom-domain verification:
//! the real resolver of the service sends it real DNS queries, and it answers
//! TXT questions from the records a test publishes (NXDOMAIN otherwise).

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use hickory_proto::{
    op::{Message, ResponseCode},
    rr::{Name, RData, Record, RecordType, rdata::TXT},
};
use tokio::net::UdpSocket;

/// Records by lower-case name without the trailing dot.
type Zone = Arc<Mutex<HashMap<String, Vec<String>>>>;

/// A running responder; it stops when the test's runtime does.
#[derive(Clone)]
pub struct TestDns {
    pub address: SocketAddr,
    zone: Zone,
}

impl TestDns {
    /// Binds 127.0.0.1 on a free port and starts answering.
    pub async fn start() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind the DNS responder");
        let address = socket.local_addr().expect("address");
        let zone = Zone::default();
        tokio::spawn(serve(socket, Arc::clone(&zone)));
        Self { address, zone }
    }

    /// Publishes a TXT record (in addition to any already at `name`).
    pub fn publish_txt(&self, name: &str, value: &str) {
        self.zone
            .lock()
            .expect("zone")
            .entry(name.trim_end_matches('.').to_ascii_lowercase())
            .or_default()
            .push(value.to_owned());
    }
}

async fn serve(socket: UdpSocket, zone: Zone) {
    let mut buffer = vec![0_u8; 4096];
    loop {
        let Ok((length, peer)) = socket.recv_from(&mut buffer).await else {
            return;
        };
        let Ok(query) = Message::from_vec(&buffer[..length]) else {
            continue;
        };
        let answer = respond(&query, &zone);
        if let Ok(bytes) = answer.to_vec() {
            let _ = socket.send_to(&bytes, peer).await;
        }
    }
}

fn respond(query: &Message, zone: &Zone) -> Message {
    let mut response = Message::response(query.metadata.id, query.metadata.op_code);
    response.metadata.authoritative = true;
    response.metadata.recursion_desired = query.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.add_queries(query.queries.clone());
    let mut found = false;
    for question in &query.queries {
        let name = question.name().to_ascii();
        let key = name.trim_end_matches('.').to_ascii_lowercase();
        let values = zone.lock().expect("zone").get(&key).cloned();
        if let Some(values) = values {
            found = true;
            if question.query_type() == RecordType::TXT {
                for value in values {
                    let owner = Name::from_ascii(&name).expect("name");
                    response.add_answer(Record::from_rdata(
                        owner,
                        60,
                        RData::TXT(TXT::new(vec![value])),
                    ));
                }
            }
        }
    }
    if !found {
        response.metadata.response_code = ResponseCode::NXDomain;
    }
    response
}
