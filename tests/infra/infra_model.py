"""A small model of the Bicep templates under infra/, built on pycep-parser.

No Bicep CLI is available here, so the tests read the parsed templates: resources with their
condition or loop unwrapped, module calls, and a resolver that follows an expression back to
a literal (module parameter -> caller's argument -> parameter default or variable value).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from pycep import BicepParser
from pycep.models import BicepElement

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MAIN = INFRA / "main.bicep"
SUBSCRIPTION = INFRA / "eventgrid-subscription.bicep"
POSIX_HOOK = INFRA / "scripts" / "deploy-eventgrid-subscription.sh"
WINDOWS_HOOK = INFRA / "scripts" / "deploy-eventgrid-subscription.ps1"
SAMPLE_SETTINGS = ROOT / "local.settings.sample.json"

# Built-in role definition ids (https://learn.microsoft.com/azure/role-based-access-control/built-in-roles).
ROLE_NAMES = {
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": "Storage Blob Data Reader",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "19e7f393-937e-4f77-808e-94535e297925": "Storage Queue Data Reader",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}


class Unresolved(str):
    """An expression that does not reduce to a literal (a runtime value, a resource property)."""


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def is_identifier(value: Any) -> bool:
    return isinstance(value, BicepElement)


def unquote(key: str) -> str:
    return key[1:-1] if len(key) >= 2 and key[0] == key[-1] == "'" else key


def strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.DOTALL)
    return "\n".join(re.sub(r"(^|\s)//.*$", "", line) for line in text.splitlines())


@dataclass
class Body:
    """A resource or module declaration, with its `if (...)` and `[for ...]` unwrapped."""

    symbol: str
    kind: str  # "resource" | "module"
    type: str  # resource type, or module path
    api_version: str
    existing: bool
    config: dict
    condition: Any = None
    loop: dict | None = None


@dataclass
class Template:
    path: Path
    data: dict
    text: str = field(repr=False)

    @property
    def params(self) -> dict:
        return self.data.get("parameters", {})

    @property
    def variables(self) -> dict:
        return self.data.get("variables", {})

    @property
    def outputs(self) -> dict:
        return self.data.get("outputs", {})

    @property
    def scope(self) -> str:
        return self.data.get("globals", {}).get("scope", {}).get("value", "resourceGroup")

    def _body(self, symbol: str, raw: dict, kind: str) -> Body:
        config, condition, loop = raw["config"], None, None
        while True:
            if "loop_type" in config:
                loop, condition = config["loop_type"], config.get("condition") or condition
                config = config["config"]
            elif set(config) == {"condition", "config"}:
                condition, config = config["condition"], config["config"]
            else:
                break
        if kind == "module":
            return Body(symbol, kind, raw["detail"]["path"], "", False, config, condition, loop)
        return Body(symbol, kind, raw["type"], raw["api_version"], raw["existing"], config, condition, loop)

    def resources(self, type_: str | None = None) -> list[Body]:
        bodies = [self._body(s, r, "resource") for s, r in self.data.get("resources", {}).items()]
        return [b for b in bodies if type_ is None or b.type.lower() == type_.lower()]

    def resource(self, symbol: str) -> Body:
        return self._body(symbol, self.data["resources"][symbol], "resource")

    def modules(self) -> list[Body]:
        return [self._body(s, m, "module") for s, m in self.data.get("modules", {}).items()]

    def module(self, symbol: str) -> Body:
        return self._body(symbol, self.data["modules"][symbol], "module")

    def module_template(self, symbol: str) -> Template:
        return load(self.path.parent / self.module(symbol).type)

    def symbols(self) -> set[str]:
        return set(self.data.get("resources", {})) | set(self.data.get("modules", {}))

    def param_default(self, name: str) -> Any:
        return self.params[name].get("default")

    def decorator(self, param: str, kind: str) -> Any:
        for deco in self.params[param].get("decorators", []):
            if deco["type"] == kind:
                return deco["argument"]
        return None

    def resolve(self, expr: Any, lookup: Callable[[str], Any] | None = None) -> Any:
        """Reduce an expression to a literal using parameter defaults and variables.

        lookup, if given, is asked first for identifiers (a module's caller arguments).
        What does not reduce comes back as Unresolved(<the expression in Bicep syntax>).
        """
        if isinstance(expr, bool | int) or expr is None:
            return expr
        if is_identifier(expr):
            name = str(expr)
            if lookup is not None:
                found = lookup(name)
                if found is not NOT_FOUND:
                    return found
            if name in self.params and self.params[name].get("default") is not None:
                return self.resolve(self.params[name]["default"], lookup)
            if name in self.variables:
                return self.resolve(self.variables[name]["value"], lookup)
            return Unresolved(name)
        if isinstance(expr, str):
            return self._interpolate(expr, lookup)
        if isinstance(expr, list):
            return [self.resolve(item, lookup) for item in expr]
        if isinstance(expr, dict) and "function" in expr and expr["function"]["type"] == "string":
            value = self.resolve(expr["function"]["parameters"]["value_to_convert"], lookup)
            if isinstance(value, bool):  # Bicep's string(true) is 'true'
                return str(value).lower()
            return value if isinstance(value, Unresolved) else str(value)
        if isinstance(expr, dict) and "operator" not in expr and "function" not in expr:
            return {unquote(k): self.resolve(v, lookup) for k, v in expr.items()}
        return Unresolved(render(expr))

    def _interpolate(self, text: str, lookup: Callable[[str], Any] | None) -> str:
        def sub(match: re.Match) -> str:
            inner = match.group(1)
            if re.fullmatch(r"\w+", inner):
                value = self.resolve(BicepElement(inner), lookup)
                if not isinstance(value, Unresolved):
                    return str(value)
            return match.group(0)

        out = re.sub(r"\$\{([^{}]+)\}", sub, text)
        return Unresolved(out) if "${" in out else out


NOT_FOUND = object()


def render(expr: Any) -> str:
    """A parsed expression written back in (approximately) Bicep syntax."""
    if isinstance(expr, bool):
        return str(expr).lower()
    if is_identifier(expr) or isinstance(expr, int):
        return str(expr)
    if isinstance(expr, str):
        return "'" + expr + "'"
    if expr is None:
        return "null"
    if isinstance(expr, list):
        return "[" + ", ".join(render(e) for e in expr) + "]"
    if isinstance(expr, dict) and "function" in expr:
        func = expr["function"]
        args = [render(v) for v in func.get("parameters", {}).values() if v is not None]
        return f"{func['type']}({', '.join(args)})"
    if isinstance(expr, dict) and "operator" in expr:
        op = expr["operator"]
        kind, ops = op["type"], op.get("operands", {})
        if kind == "property_accessor":
            return f"{render(ops['operand_1'])}.{render(ops['operand_2'])}"
        if kind == "nested_resource_accessor":
            return f"{render(ops['operand_1'])}::{render(ops['operand_2'])}"
        if kind == "index_accessor":
            return f"{render(ops['operand_1'])}[{render(ops['operand_2'])}]"
        if kind == "not":
            return f"!{render(ops['bool_value'])}"
        if kind == "conditional":
            return f"({render(ops['condition'])} ? {render(ops['true_value'])} : {render(ops['false_value'])})"
        symbols = {"and": "&&", "or": "||", "equals": "==", "not_equals": "!=", "add": "+"}
        if kind in symbols:
            return f"({render(ops['operand_1'])} {symbols[kind]} {render(ops['operand_2'])})"
        return f"{kind}({', '.join(render(v) for v in ops.values())})"
    if isinstance(expr, dict):
        return "{" + ", ".join(f"{unquote(k)}: {render(v)}" for k, v in expr.items()) + "}"
    return repr(expr)


@cache
def load(path: Path) -> Template:
    path = path.resolve()
    text = path.read_text()
    return Template(path, BicepParser().parse(text=text), text)


def main() -> Template:
    return load(MAIN)


def subscription() -> Template:
    return load(SUBSCRIPTION)


def module_call(caller: Template, module_path: str) -> Body:
    """The single call of the module at module_path (relative to infra/) in caller."""
    target = (INFRA / module_path).resolve()
    calls = [m for m in caller.modules() if (caller.path.parent / m.type).resolve() == target]
    assert len(calls) == 1, f"{module_path} is called {len(calls)} times from {rel(caller.path)}"
    return calls[0]


def resolve_in_module(module_path: str, expr: Any, caller: Template | None = None) -> Any:
    """Resolve expr written in a module called from main.bicep: a module parameter takes the
    caller's argument (resolved in the caller) before its own default."""
    caller = caller or main()
    module = load(INFRA / module_path)
    args = module_call(caller, module_path).config.get("params", {})

    def lookup(name: str) -> Any:
        if name in module.params and name in args:
            return caller.resolve(args[name])
        return NOT_FOUND

    return module.resolve(expr, lookup)


def walk(node: Any):
    """Every value in a parsed template, depth first."""
    yield node
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def identifiers(node: Any) -> set[str]:
    return {str(v) for v in walk(node) if is_identifier(v)}


def app_settings() -> dict[str, Any]:
    """name -> value expression of the function app settings (function-app.bicep)."""
    module = load(INFRA / "modules" / "function-app.bicep")
    (site,) = module.resources("Microsoft.Web/sites")
    settings = site.config["properties"]["siteConfig"]["appSettings"]
    names = [s["name"] for s in settings]
    assert len(names) == len(set(names)), f"duplicate app settings: {names}"
    return {s["name"]: s["value"] for s in settings}


def role_id(template: Template, expr: Any) -> str:
    """The GUID in subscriptionResourceId('Microsoft.Authorization/roleDefinitions', <guid>)."""
    func = expr["function"]
    assert func["type"] == "subscription_resource_id", f"roleDefinitionId must be subscriptionResourceId(...): {expr}"
    assert func["parameters"]["resource_type"] == "Microsoft.Authorization/roleDefinitions"
    name = func["parameters"]["resource_name_1"]
    if isinstance(name, dict) and name.get("operator", {}).get("type") == "property_accessor":
        operands = name["operator"]["operands"]
        table = template.resolve(operands["operand_1"])
        return table[str(operands["operand_2"])]
    return template.resolve(name)


@dataclass
class RoleGrant:
    template: str
    symbol: str
    role: str
    scope_symbol: str
    scope_type: str
    scope_name: Any
    principal: str
    principal_type: Any
    conditional: bool
    name_expr: Any
    role_expr: str  # how roleDefinitionId names the role, e.g. roles.storageBlobDataReader


def role_grants(module_path: str) -> list[RoleGrant]:
    """Role assignments of a module, with role names and scopes resolved through main.bicep."""
    module = load(INFRA / module_path)
    grants = []
    for ra in module.resources("Microsoft.Authorization/roleAssignments"):
        scope_symbol = str(ra.config["scope"])
        scope = module.resource(scope_symbol)
        props = ra.config["properties"]
        grants.append(
            RoleGrant(
                template=module_path,
                symbol=ra.symbol,
                role=ROLE_NAMES.get(role_id(module, props["roleDefinitionId"]), role_id(module, props["roleDefinitionId"])),
                scope_symbol=scope_symbol,
                scope_type=scope.type,
                scope_name=resolve_in_module(module_path, scope.config["name"]),
                principal=str(props["principalId"]),
                principal_type=props.get("principalType"),
                conditional=ra.condition is not None,
                name_expr=ra.config["name"],
                role_expr=render(props["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]),
            )
        )
    return grants


def sample_settings() -> dict[str, str]:
    return json.loads(SAMPLE_SETTINGS.read_text())["Values"]


def main_parameters() -> dict:
    return json.loads((INFRA / "main.parameters.json").read_text())["parameters"]


# A tiny evaluator for deployment-time variables (names, resource groups, conditions), so
# the tests can check what a deployment with given parameters would target.
RESOURCE_GROUP = "rg-ncrefs"
SUBSCRIPTION_ID = "00000000-0000-0000-0000-000000000000"


def evaluate(template: Template, expr: Any, params: dict[str, Any]) -> Any:
    def ev(node: Any) -> Any:
        if isinstance(node, bool | int) or node is None:
            return node
        if is_identifier(node):
            name = str(node)
            if name in params:
                return params[name]
            if name in template.params:
                if template.params[name].get("default") is None:
                    raise KeyError(f"parameter {name} has no default: pass it")
                return ev(template.params[name]["default"])
            if name in template.variables:
                return ev(template.variables[name]["value"])
            raise KeyError(f"{name} is not a parameter or variable of {rel(template.path)}")
        if isinstance(node, str):
            return re.sub(r"\$\{([^{}]+)\}", lambda m: str(ev(BicepElement(m.group(1)))), node)
        if isinstance(node, list):
            return [ev(item) for item in node]
        if isinstance(node, dict) and "function" in node:
            func, args = node["function"]["type"], list(node["function"]["parameters"].values())
            if func == "empty":
                return len(ev(args[0])) == 0
            if func == "to_lower":
                return ev(args[0]).lower()
            if func == "unique_string":
                import hashlib

                seed = "|".join(str(ev(a)) for a in args if a is not None)
                return hashlib.sha256(seed.encode()).hexdigest()[:13]
            if func == "resource_group" and args[0] is None:
                return {"name": RESOURCE_GROUP, "id": f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{RESOURCE_GROUP}"}
            if func == "subscription" and args[0] is None:
                return {"id": f"/subscriptions/{SUBSCRIPTION_ID}", "subscriptionId": SUBSCRIPTION_ID}
            raise NotImplementedError(func)
        if isinstance(node, dict) and "operator" in node:
            op = node["operator"]
            kind, ops = op["type"], op["operands"]
            if kind == "not":
                return not ev(ops["bool_value"])
            if kind == "and":
                return ev(ops["operand_1"]) and ev(ops["operand_2"])
            if kind == "or":
                return ev(ops["operand_1"]) or ev(ops["operand_2"])
            if kind == "conditional":
                return ev(ops["true_value"]) if ev(ops["condition"]) else ev(ops["false_value"])
            if kind == "property_accessor":
                return ev(ops["operand_1"])[str(ops["operand_2"])]
            raise NotImplementedError(kind)
        if isinstance(node, dict):
            return {unquote(k): ev(v) for k, v in node.items()}
        raise NotImplementedError(repr(node))

    return ev(expr)
