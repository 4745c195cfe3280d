//! The WebSocket API as `template.yaml` declares it: the `AWS::ApiGatewayV2::Api` with
//! `ProtocolType: WEBSOCKET`, its stage, and each route with the function behind its
//! integration. These resources are not emulated by [`Template::resolve`] (they have no local
//! name or ARN), so their links (`ApiId: !Ref Api`, `Target: !Sub "integrations/${Integration}"`,
//! `IntegrationUri: !Sub "...functions/${Function.Arn}/invocations"`) are followed by the logical
//! ids they name, in any of CloudFormation's forms.
//!
//! [`Template::resolve`]: crate::template::Template::resolve

use crate::template::{FunctionSpec, Resource, Template};
use anyhow::{bail, Context, Result};
use serde_json::Value as Json;
use serde_norway::Value as Yaml;
use std::collections::BTreeMap;
use std::time::Duration;

const API_TYPE: &str = "AWS::ApiGatewayV2::Api";
const INTEGRATION_TYPE: &str = "AWS::ApiGatewayV2::Integration";
const ROUTE_TYPE: &str = "AWS::ApiGatewayV2::Route";
const ROUTE_RESPONSE_TYPE: &str = "AWS::ApiGatewayV2::RouteResponse";
const STAGE_TYPE: &str = "AWS::ApiGatewayV2::Stage";

/// The route API Gateway invokes before accepting a connection.
pub const CONNECT: &str = "$connect";
/// The route invoked once a connection has closed.
pub const DISCONNECT: &str = "$disconnect";
/// The route of messages no other route matches.
pub const DEFAULT: &str = "$default";

/// What the template's WebSocket API serves.
#[derive(Debug, Clone, PartialEq)]
pub struct WebSocketApiSpec {
    pub api_logical_id: String,
    /// `StageName` of the API's stage: the path clients connect to.
    pub stage: String,
    pub route_selection: RouteSelection,
    /// By route key (`$connect`, `subscribe`...).
    pub routes: BTreeMap<String, RouteTarget>,
}

/// The function behind a route.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteTarget {
    pub route_logical_id: String,
    pub function_logical_id: String,
    /// The function's binary, as the invoker takes it.
    pub binary: String,
    pub timeout: Duration,
}

/// `RouteSelectionExpression`: which field of a JSON message names its route
/// (`$request.body.action`, or `${request.body.action}`; nested fields with dots).
#[derive(Debug, Clone, PartialEq)]
pub struct RouteSelection {
    pub expression: String,
    path: Vec<String>,
}

impl RouteSelection {
    pub fn parse(expression: &str) -> Result<Self> {
        let trimmed = expression.trim();
        let inner = match trimmed
            .strip_prefix("${")
            .and_then(|rest| rest.strip_suffix('}'))
        {
            Some(inner) => inner,
            None => trimmed.strip_prefix('$').unwrap_or(trimmed),
        };
        let Some(path) = inner.strip_prefix("request.body.") else {
            bail!(
                "RouteSelectionExpression {expression:?}: the local stack selects routes by a \
                 field of the message body only ($request.body.<field>)"
            );
        };
        let path: Vec<String> = path.split('.').map(str::to_owned).collect();
        if path.iter().any(String::is_empty) {
            bail!("RouteSelectionExpression {expression:?} names an empty field");
        }
        Ok(Self {
            expression: expression.to_owned(),
            path,
        })
    }

    /// The route key a text message selects; `None` (so `$default`) when the message is not a
    /// JSON object or the field is missing or not a string.
    pub fn route_key(&self, message: &str) -> Option<String> {
        let body: Json = serde_json::from_str(message).ok()?;
        let mut value = &body;
        for field in &self.path {
            value = value.as_object()?.get(field)?;
        }
        value.as_str().map(str::to_owned)
    }
}

impl WebSocketApiSpec {
    /// The route a message with `selected` (the selection expression's value) goes to: its own
    /// route, else `$default`. The lifecycle routes (`$connect`...) are not for messages.
    pub fn message_route(&self, selected: Option<&str>) -> Option<(&str, &RouteTarget)> {
        let own = selected
            .filter(|key| !key.starts_with('$'))
            .and_then(|key| self.routes.get_key_value(key));
        own.or_else(|| self.routes.get_key_value(DEFAULT))
            .map(|(key, target)| (key.as_str(), target))
    }
}

/// The template's WebSocket API, `None` when it declares none. Fails on what the local stack
/// cannot serve faithfully (authorizers, integrations other than Lambda proxy, several APIs).
pub fn websocket_api_of(
    template: &Template,
    functions: &[FunctionSpec],
) -> Result<Option<WebSocketApiSpec>> {
    let apis: Vec<&Resource> = of_type(template, API_TYPE)
        .filter(|r| prop_str(r, "ProtocolType") == Some("WEBSOCKET"))
        .collect();
    let api = match apis.as_slice() {
        [] => return Ok(None),
        [api] => *api,
        several => bail!(
            "the template declares {} WebSocket APIs ({}); the local stack serves one",
            several.len(),
            several
                .iter()
                .map(|r| r.logical_id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let id = api.logical_id.as_str();
    let expression = prop_str(api, "RouteSelectionExpression")
        .with_context(|| format!("{id}: a WebSocket API needs a RouteSelectionExpression"))?;
    let route_selection =
        RouteSelection::parse(expression).with_context(|| format!("WebSocket API {id}"))?;

    let of_api = |type_name: &'static str| {
        of_type(template, type_name)
            .filter(move |r| r.properties.get("ApiId").is_some_and(|v| refers_to(v, id)))
    };

    let mut integrations: BTreeMap<&str, &FunctionSpec> = BTreeMap::new();
    for integration in of_api(INTEGRATION_TYPE) {
        let name = integration.logical_id.as_str();
        match prop_str(integration, "IntegrationType") {
            Some("AWS_PROXY") => {}
            other => bail!(
                "integration {name}: IntegrationType {other:?} is not served locally; \
                 only Lambda proxy integrations (AWS_PROXY) are"
            ),
        }
        let uri = integration
            .properties
            .get("IntegrationUri")
            .with_context(|| format!("integration {name} has no IntegrationUri"))?;
        let names = references(uri);
        let function = functions
            .iter()
            .find(|f| names.contains(&f.logical_id))
            .with_context(|| {
                format!("integration {name}: its IntegrationUri names no function of the template")
            })?;
        integrations.insert(name, function);
    }

    let mut routes = BTreeMap::new();
    for route in of_api(ROUTE_TYPE) {
        let name = route.logical_id.as_str();
        let key =
            prop_str(route, "RouteKey").with_context(|| format!("route {name} has no RouteKey"))?;
        match prop_str(route, "AuthorizationType") {
            None | Some("NONE") => {}
            Some(other) => bail!(
                "route {name}: AuthorizationType {other} is not emulated locally; \
                 authorize in the $connect function instead"
            ),
        }
        let target = route.properties.get("Target").with_context(|| {
            format!("route {name} has no Target; the local stack serves routes with an integration")
        })?;
        let function = references(target)
            .iter()
            .find_map(|r| integrations.get(r.as_str()))
            .with_context(|| {
                format!("route {name}: its Target names no integration of the API {id}")
            })?;
        let previous = routes.insert(
            key.to_owned(),
            RouteTarget {
                route_logical_id: name.to_owned(),
                function_logical_id: function.logical_id.clone(),
                binary: function.binary.clone(),
                timeout: function.timeout,
            },
        );
        if previous.is_some() {
            bail!("the WebSocket API {id} declares the route {key} twice");
        }
    }
    if of_api(ROUTE_RESPONSE_TYPE).next().is_some() {
        // Two-way routes would send the function's answer to the client; the devstack does not.
        tracing::warn!(
            "the WebSocket API {id} declares route responses; the local stack does not send them"
        );
    }

    let stages: Vec<&Resource> = of_api(STAGE_TYPE).collect();
    let stage = stages
        .first()
        .with_context(|| format!("the WebSocket API {id} has no Stage; clients connect to one"))?;
    if stages.len() > 1 {
        tracing::warn!(
            "the WebSocket API {id} has {} stages; the local stack serves {} only",
            stages.len(),
            stage.logical_id
        );
    }
    let stage_name = prop_str(stage, "StageName")
        .with_context(|| format!("stage {} needs a literal StageName", stage.logical_id))?;
    let valid = !stage_name.is_empty()
        && stage_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        bail!(
            "stage {}: StageName {stage_name:?} must be letters, digits, - or _",
            stage.logical_id
        );
    }

    Ok(Some(WebSocketApiSpec {
        api_logical_id: id.to_owned(),
        stage: stage_name.to_owned(),
        route_selection,
        routes,
    }))
}

fn of_type<'a>(
    template: &'a Template,
    type_name: &'static str,
) -> impl Iterator<Item = &'a Resource> {
    template
        .resources
        .values()
        .filter(move |r| r.type_name == type_name)
}

fn prop_str<'a>(r: &'a Resource, key: &str) -> Option<&'a str> {
    r.properties.get(key).and_then(Yaml::as_str)
}

fn refers_to(value: &Yaml, logical_id: &str) -> bool {
    references(value).iter().any(|r| r == logical_id)
}

/// The logical ids (and parameters) `value` names through `Ref`, `Fn::GetAtt` or `Fn::Sub`, in
/// short or long form, anywhere inside it; pseudo parameters (`AWS::Region`) left out.
pub fn references(value: &Yaml) -> Vec<String> {
    let mut out = Vec::new();
    collect_references(value, &mut out);
    out.retain(|name| !name.starts_with("AWS::"));
    out
}

fn collect_references(value: &Yaml, out: &mut Vec<String>) {
    match value {
        Yaml::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            intrinsic_references(name, &tagged.value, out);
        }
        Yaml::Mapping(map) => {
            for (key, v) in map {
                match key.as_str() {
                    Some(k @ ("Ref" | "Fn::GetAtt" | "Fn::Sub")) if map.len() == 1 => {
                        intrinsic_references(k.trim_start_matches("Fn::"), v, out);
                    }
                    _ => collect_references(v, out),
                }
            }
        }
        Yaml::Sequence(items) => items.iter().for_each(|v| collect_references(v, out)),
        _ => {}
    }
}

fn intrinsic_references(name: &str, arg: &Yaml, out: &mut Vec<String>) {
    match (name, arg) {
        ("Ref", Yaml::String(target)) => out.push(target.clone()),
        ("GetAtt", Yaml::String(target)) => {
            out.push(target.split('.').next().unwrap_or(target).to_owned());
        }
        ("GetAtt", Yaml::Sequence(parts)) => {
            if let Some(target) = parts.first().and_then(Yaml::as_str) {
                out.push(target.to_owned());
            }
        }
        ("Sub", Yaml::String(text)) => sub_references(text, &[], out),
        ("Sub", Yaml::Sequence(parts)) => {
            let vars = parts.get(1).and_then(Yaml::as_mapping);
            let local: Vec<&str> = vars
                .into_iter()
                .flat_map(|m| m.keys())
                .filter_map(Yaml::as_str)
                .collect();
            if let Some(text) = parts.first().and_then(Yaml::as_str) {
                sub_references(text, &local, out);
            }
            if let Some(vars) = vars {
                vars.values().for_each(|v| collect_references(v, out));
            }
        }
        (_, other) => collect_references(other, out),
    }
}

/// The names in `${Name}` and `${Name.Attribute}` of a `Fn::Sub` text, but its own variables
/// and the `${!Literal}` escapes.
fn sub_references(text: &str, local: &[&str], out: &mut Vec<String>) {
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { return };
        let name = &after[..end];
        if !name.starts_with('!') && !local.contains(&name) {
            out.push(name.split('.').next().unwrap_or(name).to_owned());
        }
        rest = &after[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A function as `Template::functions` gives it.
    fn function(logical_id: &str, binary: &str) -> FunctionSpec {
        let text = format!(
            "Resources:\n  {logical_id}:\n    Type: AWS::Serverless::Function\n    \
             Metadata: {{ BuildProperties: {{ Binary: {binary} }} }}\n    \
             Properties: {{ CodeUri: x, Timeout: 10 }}\n"
        );
        let template = Template::parse(&text, Path::new(".")).expect("parses");
        let mut functions = template
            .functions(&crate::template::Resources::planned(&template))
            .expect("resolves");
        functions.pop().expect("one function")
    }

    #[test]
    fn the_templates_websocket_api() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let text = std::fs::read_to_string(root.join("template.yaml")).expect("template.yaml");
        let template = Template::parse(&text, &root).expect("parses");
        let functions = [function("LiveSocketFunction", "live-socket")];
        let api = websocket_api_of(&template, &functions)
            .expect("served")
            .expect("declared");
        assert_eq!(api.api_logical_id, "LiveEventsApi");
        assert_eq!(api.stage, "live");
        assert_eq!(api.route_selection.expression, "$request.body.action");
        let keys: Vec<&str> = api.routes.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "$connect",
                "$default",
                "$disconnect",
                "ping",
                "subscribe",
                "unsubscribe"
            ]
        );
        assert!(api.routes.values().all(|r| r.binary == "live-socket"));
        assert_eq!(
            api.routes["subscribe"].route_logical_id,
            "LiveSubscribeRoute"
        );
    }

    const MINIMAL: &str = r#"
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties: { CodeUri: x }
  Ws:
    Type: AWS::ApiGatewayV2::Api
    Properties: { ProtocolType: WEBSOCKET, RouteSelectionExpression: "${request.body.msg.kind}" }
  Integ:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: { Ref: Ws }
      IntegrationType: AWS_PROXY
      IntegrationUri: { "Fn::Join": ["", ["arn:aws:apigateway:r:lambda:path/2015-03-31/functions/", { "Fn::GetAtt": [Fn, Arn] }, "/invocations"]] }
  Connect:
    Type: AWS::ApiGatewayV2::Route
    Properties: { ApiId: !Ref Ws, RouteKey: $connect, Target: { "Fn::Join": ["/", [integrations, !Ref Integ]] } }
  Stage:
    Type: AWS::ApiGatewayV2::Stage
    Properties: { ApiId: !Ref Ws, StageName: dev }
  Http:
    Type: AWS::ApiGatewayV2::Api
    Properties: { ProtocolType: HTTP }
"#;

    #[test]
    fn long_forms_and_nested_selection() {
        let template = Template::parse(MINIMAL, Path::new(".")).expect("parses");
        let api = websocket_api_of(&template, &[function("Fn", "f")])
            .expect("served")
            .expect("declared");
        assert_eq!(api.stage, "dev");
        assert_eq!(api.routes["$connect"].binary, "f");
        let selection = &api.route_selection;
        assert_eq!(
            selection.route_key(r#"{"msg": {"kind": "a"}}"#).as_deref(),
            Some("a")
        );
        assert_eq!(selection.route_key(r#"{"msg": {"kind": 1}}"#), None);
        assert_eq!(selection.route_key("not json"), None);
        assert_eq!(api.message_route(Some("a")), None);
    }

    #[test]
    fn unserved_shapes_are_refused() {
        let authorized = MINIMAL.replace(
            "RouteKey: $connect,",
            "RouteKey: $connect, AuthorizationType: CUSTOM,",
        );
        let template = Template::parse(&authorized, Path::new(".")).expect("parses");
        let e = websocket_api_of(&template, &[function("Fn", "f")]).expect_err("refused");
        assert!(
            format!("{e:#}").contains("AuthorizationType CUSTOM"),
            "{e:#}"
        );

        let http = MINIMAL.replace("AWS_PROXY", "HTTP_PROXY");
        let template = Template::parse(&http, Path::new(".")).expect("parses");
        assert!(websocket_api_of(&template, &[function("Fn", "f")]).is_err());

        let template = Template::parse(MINIMAL, Path::new(".")).expect("parses");
        let e = websocket_api_of(&template, &[function("Other", "o")]).expect_err("no function");
        assert!(format!("{e:#}").contains("names no function"), "{e:#}");

        assert!(RouteSelection::parse("$request.header.x").is_err());
        assert!(RouteSelection::parse("$request.body.").is_err());
    }

    #[test]
    fn references_in_every_form() {
        let yaml: Yaml = serde_norway::from_str(
            r#"
a: !Sub "arn:${AWS::Partition}:x/${Fn.Arn}/${!Literal}/${Local}"
b: !Sub ["${Local}/${Api}", { Local: !Ref Param }]
c: { "Fn::GetAtt": "Other.Arn" }
d: [!GetAtt [Third, Arn]]
"#,
        )
        .expect("yaml");
        assert_eq!(
            references(&yaml),
            ["Fn", "Local", "Api", "Param", "Other", "Third"]
        );
    }
}
