//! A running `lora serve` on the loopback interface, and a real HTTP client (ureq) for it.

#![allow(clippy::unwrap_used, dead_code)] // tests: a failed unwrap is a failed test

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running `lora serve`, killed when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub fn start(model: &Path, args: &[&str]) -> Server {
        Self::start_with(model, args, &[])
    }

    pub fn start_with(model: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lora"))
            .args(["serve", "--model", model.to_str().unwrap(), "--port", "0"])
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("listening on http://") {
                    let _ = tx.send(rest.split_whitespace().next().unwrap().to_string());
                }
                lines.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("the server did not start: {:?}", log.lock().unwrap());
            }
        };
        Server { child, base: format!("http://{addr}"), log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// (status, body as JSON, or the text when it is not JSON)
    pub fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        self.call_as(None, method, path, body)
    }

    /// `call` with `Authorization: VALUE` when given.
    pub fn call_as(&self, authorization: Option<&str>, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let mut headers = Vec::new();
        if let Some(value) = authorization {
            headers.push(("Authorization", value));
        }
        if body.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        let (status, _, answer) = self.exchange(method, path, body, &headers);
        (status, answer)
    }

    /// (status, headers with lower-case names, body as JSON or text): `body` sent as is, with
    /// the headers given and no others (no `Content-Type` unless given).
    pub fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (u16, std::collections::BTreeMap<String, String>, Value) {
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).build();
        let mut request = agent.request(method, &self.url(path));
        for (name, value) in headers {
            request = request.set(name, value);
        }
        let result = match body {
            Some(b) => request.send_bytes(b.as_bytes()),
            None => request.call(),
        };
        let response = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let status = response.status();
        let names = response.headers_names();
        let headers =
            names.iter().filter_map(|n| response.header(n).map(|v| (n.to_ascii_lowercase(), v.to_string()))).collect();
        let text = response.into_string().unwrap();
        (status, headers, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub fn predict(&self, body: Value) -> (u16, Value) {
        self.call("POST", "/predict", Some(&body.to_string()))
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        self.wait()
    }

    /// Its exit status, within a minute.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < until, "the server did not stop: {}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
