//! OpenTelemetry traces over OTLP/HTTP (protobuf), with the standard `OTEL_*` variables.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use opentelemetry::{Array, Context, KeyValue, Value};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, Sampler, SdkTracerProvider, Span, SpanData, SpanProcessor,
};

use crate::config::TracingConfig;
use crate::error::{Error, Result};
use crate::format::ServiceInfo;
use crate::redact::Redactor;

/// What the exporter was built with (after the `OTEL_*` variables were applied).
#[derive(Clone, Debug)]
pub(crate) struct Resolved {
    pub(crate) endpoint: String,
    pub(crate) headers: HashMap<String, String>,
    pub(crate) timeout: Duration,
    pub(crate) sampler: Sampler,
    pub(crate) service_name: String,
    pub(crate) resource: Vec<(String, String)>,
}

/// `k1=v1,k2=v2` with percent-encoded values (the W3C Baggage-like format of `OTEL_*_HEADERS`).
fn parse_pairs(s: &str) -> Vec<(String, String)> {
    s.split(',')
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            let k = k.trim();
            (!k.is_empty()).then(|| (k.to_owned(), percent_decode(v.trim())))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// Resolves config + `OTEL_*` variables. Config wins where it is set (a non-empty endpoint, each
/// header it names); an explicit `OTEL_TRACES_SAMPLER` wins over `sampleRate`. `None` when
/// `OTEL_SDK_DISABLED=true`.
pub(crate) fn resolve(
    cfg: &TracingConfig,
    env: &HashMap<String, String>,
    service: &ServiceInfo,
) -> Option<Resolved> {
    let var = |k: &str| env.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return None;
    }
    let endpoint = if cfg.endpoint.is_empty() {
        var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .map(str::to_owned)
            .unwrap_or_else(|| {
                let base = var("OTEL_EXPORTER_OTLP_ENDPOINT").unwrap_or("http://localhost:4318");
                format!("{}/v1/traces", base.trim_end_matches('/'))
            })
    } else {
        cfg.endpoint.clone()
    };
    let mut headers = HashMap::new();
    for k in [
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    ] {
        if let Some(v) = var(k) {
            headers.extend(parse_pairs(v));
        }
    }
    for (k, v) in &cfg.headers {
        headers.insert(k.clone(), v.expose().to_owned());
    }
    let timeout = var("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
        .or_else(|| var("OTEL_EXPORTER_OTLP_TIMEOUT"))
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(Duration::from_secs(10), Duration::from_millis);
    let arg = var("OTEL_TRACES_SAMPLER_ARG")
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v.clamp(0.0, 1.0));
    let ratio = |default: f64| Sampler::TraceIdRatioBased(arg.unwrap_or(default));
    let sampler = match var("OTEL_TRACES_SAMPLER") {
        Some("always_on") => Sampler::AlwaysOn,
        Some("always_off") => Sampler::AlwaysOff,
        Some("traceidratio") => ratio(1.0),
        Some("parentbased_always_on") => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        Some("parentbased_always_off") => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        Some("parentbased_traceidratio") => Sampler::ParentBased(Box::new(ratio(1.0))),
        _ => Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            cfg.sample_rate.clamp(0.0, 1.0),
        ))),
    };
    let mut resource = vec![
        ("service.version".to_owned(), service.version.clone()),
        ("host.name".to_owned(), service.hostname.clone()),
        ("process.pid".to_owned(), service.pid.to_string()),
    ];
    if let Some(v) = var("OTEL_RESOURCE_ATTRIBUTES") {
        for (k, v) in parse_pairs(v) {
            resource.retain(|(rk, _)| *rk != k);
            resource.push((k, v));
        }
    }
    let service_name =
        var("OTEL_SERVICE_NAME").map_or_else(|| service.service.clone(), str::to_owned);
    Some(Resolved {
        endpoint,
        headers,
        timeout,
        sampler,
        service_name,
        resource,
    })
}

/// Builds the tracer provider: OTLP/HTTP protobuf exporter, batch processor, redaction of span
/// attributes and events before export.
pub(crate) fn provider(
    r: &Resolved,
    redactor: Arc<ArcSwap<Redactor>>,
) -> Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(r.endpoint.clone())
        .with_headers(r.headers.clone())
        .with_timeout(r.timeout)
        .build()
        .map_err(|e| Error::Tracing(e.to_string()))?;
    let processor = Redacting {
        inner: BatchSpanProcessor::builder(exporter).build(),
        redactor,
    };
    let resource = Resource::builder_empty()
        .with_service_name(r.service_name.clone())
        .with_attributes(
            r.resource
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        )
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(r.sampler.clone())
        .with_resource(resource)
        .build())
}

/// Applies the log redaction policy to span attributes, event names and event attributes.
#[derive(Debug)]
struct Redacting<P> {
    inner: P,
    redactor: Arc<ArcSwap<Redactor>>,
}

fn redact_attrs(red: &Redactor, attrs: &mut [KeyValue]) {
    for kv in attrs {
        if red.is_sensitive_key(kv.key.as_str()) {
            kv.value = Value::from(tamma_core::REDACTED);
        } else if let Value::String(s) = &kv.value {
            if let std::borrow::Cow::Owned(o) = red.value(s.as_str()) {
                kv.value = Value::from(o);
            }
        } else if let Value::Array(Array::String(items)) = &mut kv.value {
            // e.g. `exception.stacktrace`: the error's source chain.
            for item in items.iter_mut() {
                if let std::borrow::Cow::Owned(o) = red.value(item.as_str()) {
                    *item = o.into();
                }
            }
        }
    }
}

impl<P: SpanProcessor> SpanProcessor for Redacting<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, mut span: SpanData) {
        let red = self.redactor.load();
        redact_attrs(&red, &mut span.attributes);
        for e in &mut span.events.events {
            if let std::borrow::Cow::Owned(o) = red.value(&e.name) {
                e.name = o.into();
            }
            redact_attrs(&red, &mut e.attributes);
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn config_wins_and_env_fills_in() {
        let svc = ServiceInfo::new("tamma", "1.0").with_hostname("h");
        let mut cfg = TracingConfig::default();
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=a%20b,x=1"),
            ("OTEL_SERVICE_NAME", "svc"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod"),
        ]);
        let r = resolve(&cfg, &e, &svc).unwrap();
        assert_eq!(r.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(r.headers["api-key"], "a b");
        assert_eq!(r.service_name, "svc");
        assert!(
            r.resource
                .contains(&("deployment.environment".into(), "prod".into()))
        );
        assert!(
            format!("{:?}", r.sampler).contains("TraceIdRatioBased(0.1)"),
            "{:?}",
            r.sampler
        );

        cfg.endpoint = "http://mine:4318/v1/traces".into();
        cfg.headers.insert("x".into(), tamma_core::Secret::new("2"));
        let r = resolve(&cfg, &e, &svc).unwrap();
        assert_eq!(r.endpoint, "http://mine:4318/v1/traces");
        assert_eq!(r.headers["x"], "2");

        let e = env(&[("OTEL_TRACES_SAMPLER", "always_off")]);
        assert!(matches!(
            resolve(&cfg, &e, &svc).unwrap().sampler,
            Sampler::AlwaysOff
        ));
        assert!(resolve(&cfg, &env(&[("OTEL_SDK_DISABLED", "true")]), &svc).is_none());
    }
}
