"""The scope and field-mapping editor's forms."""

from __future__ import annotations

from django import forms

from .mapping import (
    DEFAULT_RULES,
    FIELD_LENGTHS,
    OPERATORS,
    SOURCES,
    Condition,
    Mapping,
    Policy,
)

FIELD_LABELS = {
    "first_name": "First name",
    "last_name": "Last name",
    "job_title": "Job title",
    "phone": "Phone",
    "city": "City",
    "country": "Country",
    "employee_id": "Employee ID",
    "department": "Department",
}


def parse_conditions(text: str) -> list[dict]:
    """One condition a line: `column operator [value]`, e.g. `address1_country eq France`."""
    conditions = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.strip().split(None, 2)
        if len(parts) < 2:
            raise forms.ValidationError(
                f"Line {number}: write a column, an operator ({', '.join(OPERATORS)}) and a value."
            )
        column, operator, value = parts[0], parts[1].lower(), parts[2] if len(parts) > 2 else ""
        try:
            Condition(column, operator, value.strip("'\""))
        except ValueError as exc:
            raise forms.ValidationError(f"Line {number}: {exc}") from exc
        if operator not in ("empty", "not_empty") and not value:
            raise forms.ValidationError(f"Line {number}: '{operator}' needs a value.")
        conditions.append({"column": column, "operator": operator, "value": value.strip("'\"")})
    return conditions


def conditions_text(conditions: list[dict]) -> str:
    return "\n".join(
        f"{c['column']} {c['operator']} {c.get('value', '')}".strip() for c in conditions
    )


class ScopeForm(forms.Form):
    source_table = forms.ChoiceField(
        choices=[(source.key, source.label) for source in SOURCES.values()],
        widget=forms.RadioSelect,
        label="Sync people from",
        help_text="Changing the table starts its field mapping from the defaults.",
    )
    business_units = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Business units",
        help_text="Only people in these business units. None chosen: everyone.",
    )
    conditions = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        label="Conditions",
        help_text="One a line, all must hold: a column, an operator ("
        + ", ".join(OPERATORS)
        + ") and a value, e.g. address1_country eq France.",
    )

    def __init__(self, *args, units: list[tuple[str, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["business_units"].choices = units

    def clean_conditions(self):
        return parse_conditions(self.cleaned_data["conditions"])


class MappingForm(forms.Form):
    """For each user field: the column, a fallback column, when to apply it, and whether an
    empty value in Dynamics clears the field here."""

    def __init__(self, *args, mapping: Mapping, **kwargs):
        super().__init__(*args, **kwargs)
        defaults = {rule.field: rule for rule in DEFAULT_RULES}
        for name in FIELD_LENGTHS:
            rule = mapping.rule(name) or defaults[name]
            self.fields[f"{name}__column"] = forms.CharField(
                required=False,
                initial=rule.column if mapping.rule(name) else "",
                label=f"{FIELD_LABELS[name]}: column",
            )
            self.fields[f"{name}__fallback"] = forms.CharField(
                required=False, initial=rule.fallback, label=f"{FIELD_LABELS[name]}: fallback"
            )
            self.fields[f"{name}__policy"] = forms.ChoiceField(
                choices=Policy.CHOICES, initial=rule.policy, label=f"{FIELD_LABELS[name]}: when"
            )
            self.fields[f"{name}__clear"] = forms.BooleanField(
                required=False, initial=rule.clear, label=f"{FIELD_LABELS[name]}: empty clears"
            )

    def rows(self):
        for name in FIELD_LENGTHS:
            yield (
                FIELD_LABELS[name],
                [self[f"{name}__{part}"] for part in ("column", "fallback", "policy", "clear")],
            )

    def clean(self):
        cleaned = super().clean()
        config = {}
        for name in FIELD_LENGTHS:
            column = (cleaned.get(f"{name}__column") or "").strip()
            if not column:
                config[name] = None  # not mapped
                continue
            for candidate in (column, (cleaned.get(f"{name}__fallback") or "").strip()):
                if candidate and not all(c.isalnum() or c == "_" for c in candidate):
                    raise forms.ValidationError(f"'{candidate}' is not a Dynamics column name.")
            config[name] = {
                "column": column,
                "fallback": (cleaned.get(f"{name}__fallback") or "").strip(),
                "policy": cleaned.get(f"{name}__policy") or Policy.ALWAYS,
                "clear": bool(cleaned.get(f"{name}__clear")),
            }
        try:
            Mapping.from_config(config)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from exc
        cleaned["config"] = config
        return cleaned
