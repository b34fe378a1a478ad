"""Scope and field mapping: who the sync is for and which column feeds which field, with a
preview on a real record read from Dynamics before anything is saved."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render

from learnexa.accounts.access import site_admin_required

from .credentials import AuthenticationError
from .dataverse import DataverseError
from .jobs import enqueue_sync
from .lookup import email_filter, email_problem
from .mapping import SOURCES, SYSTEMUSERS, Mapping, Scope
from .mapping_forms import FIELD_LABELS, MappingForm, ScopeForm, conditions_text
from .models import DynamicsCrmSetting, SyncRun
from .sync import open_client


def _dynamics(setting, mapping: Mapping | None, sample_email: str = ""):
    """Business units for the scope form, and a sample record read with `mapping`'s columns
    (which also proves every column exists). Returns (units, sample, error)."""
    units, sample, error = [], None, ""
    try:
        with open_client(setting, max_retries=1, max_throttle_wait=10) as client:
            body = client.get(f"{client.api_root}/businessunits?$select=businessunitid,name")
            units = [
                (u["businessunitid"], u.get("name") or u["businessunitid"])
                for u in body.get("value", [])
            ]
            if mapping is not None:
                client.page_size = 1
                source = mapping.source
                people = "applicationid eq null" if source is SYSTEMUSERS else "statecode eq 0"
                url = client.collection_url(
                    source.key,
                    select=mapping.columns,
                    filter=email_filter(sample_email, source.email_column)
                    if sample_email
                    else people,
                )
                records = next(client.pages(url)).records
                sample = records[0] if records else None
    except (AuthenticationError, DataverseError) as exc:
        error = str(exc)
    return units, sample, error


@site_admin_required
def mapping_page(request):
    setting = get_object_or_404(DynamicsCrmSetting, company=request.company)
    current = Mapping.for_setting(setting)
    posted = request.method == "POST"
    scope_form = ScopeForm(
        request.POST if posted else None,
        units=[],
        initial={
            "source_table": current.source.key,
            "business_units": list(current.scope.business_units),
            "conditions": conditions_text(setting.scope_conditions or []),
        },
    )
    mapping_form = MappingForm(request.POST if posted else None, mapping=current)
    sample_email = request.POST.get("sample_email", "").strip() if posted else ""
    # Checked before anything is sent: the email goes into the request's URL.
    email_error = email_problem(sample_email) if sample_email else ""

    proposed, error = current, ""
    if posted:
        # The unit choices come from Dynamics; validate against what was offered.
        units, _, error = _dynamics(setting, None)
        scope_form.fields["business_units"].choices = units
        if scope_form.is_valid() and mapping_form.is_valid():
            source = SOURCES[scope_form.cleaned_data["source_table"]]
            if source is not current.source:
                # Another table has other columns: start from its defaults.
                config, units_chosen = {}, []
            else:
                config, units_chosen = (
                    mapping_form.cleaned_data["config"],
                    scope_form.cleaned_data["business_units"],
                )
            proposed = Mapping.from_config(config, source)
            try:
                proposed.scope = Scope.from_config(
                    units_chosen, scope_form.cleaned_data["conditions"], source.business_unit_column
                )
            except ValueError as exc:
                scope_form.add_error("business_units", str(exc))
    if email_error:
        units, sample, read_error = _dynamics(setting, None)
    else:
        units, sample, read_error = _dynamics(setting, proposed, sample_email)
    scope_form.fields["business_units"].choices = units
    error = email_error or error or read_error

    valid = posted and scope_form.is_valid() and mapping_form.is_valid() and not error
    if valid and request.POST.get("action") == "save":
        setting.source_table = proposed.source.key
        setting.field_mapping = config
        setting.scope_business_units = list(proposed.scope.business_units)
        setting.scope_conditions = scope_form.cleaned_data["conditions"]
        setting.save(
            update_fields=[
                "source_table",
                "field_mapping",
                "scope_business_units",
                "scope_conditions",
                "updated_at",
            ]
        )
        # Who is in scope and what each field holds may have changed for anyone.
        run = enqueue_sync(setting, SyncRun.Trigger.SETTINGS_SAVED, full=True)
        messages.success(request, "Saved. A full reconciliation has been queued.")
        return redirect("dynamics_crm:run_detail", run_id=run.pk)

    preview = None
    if sample is not None:
        mapped = proposed.map(sample)
        preview = {
            "email": mapped.email,
            "skip": mapped.skip_reason,
            "out_of_scope": mapped.disabled_reason,
            "fields": [(FIELD_LABELS[name], value) for name, value in mapped.fields.items()],
        }
    return render(
        request,
        "dynamics_crm/mapping.html",
        {
            "scope_form": scope_form,
            "mapping_form": mapping_form,
            "preview": preview,
            "sample_email": sample_email,
            "error": error,
            "setting": setting,
        },
    )
