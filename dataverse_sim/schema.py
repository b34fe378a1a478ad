"""Columns and column types of the ``systemuser``, ``businessunit`` and ``contact`` tables.

The ``systemuser`` columns, their order and the shape of their values follow the sample
record in the product's original design note (a Dynamics CRM 8.2 response).  That exact
record is part of every generated organization (``DAVID_SO_RECORD``).
"""

from __future__ import annotations

# The sample record from the design note, verbatim (without its @odata annotations;
# its etag was W/"987803", i.e. its versionnumber).
DAVID_SO_RECORD = {
    "systemuserid": "9025bbf4-3430-4d0c-bfcf-16f0bf7fbc80",
    "accessmode": 0,
    "firstname": "David",
    "address2_shippingmethodcode": 1,
    "issyncwithdirectory": False,
    "address1_addressid": "420fc494-f768-4e49-b50e-f16a5b4c2fbd",
    "incomingemaildeliverymethod": 2,
    "internalemailaddress": "davids@crmdemo.dynamics.com",
    "domainname": "administration_5@crmdemo.dynamics.com",
    "_queueid_value": "632476fd-32d9-e611-8119-c4346bdc3cc1",
    "isintegrationuser": False,
    "createdon": "2017-01-13T01:52:51Z",
    "_calendarid_value": "01fbd78c-61f2-4ca3-bb46-245d82e7b086",
    "windowsliveid": "administration_5@crmdemo.dynamics.com",
    "address1_addresstypecode": 1,
    "_businessunitid_value": "85bf39cf-2bd9-e611-8119-c4346bdc3cc1",
    "displayinserviceviews": False,
    "defaultodbfoldername": "CRM",
    "caltype": 0,
    "modifiedon": "2017-01-19T06:20:59Z",
    "address1_shippingmethodcode": 1,
    "defaultfilterspopulated": False,
    "outgoingemaildeliverymethod": 2,
    "address1_composite": "US",
    "emailrouteraccessapproval": 2,
    "versionnumber": 987803,
    "address2_addresstypecode": 1,
    "preferredphonecode": 1,
    "fullname": "David So (Sample Data)",
    "setupuser": False,
    "preferredemailcode": 1,
    "userlicensetype": 3,
    "_modifiedby_value": "60ebc0f7-6bb0-49fa-9156-6c14b0eff61d",
    "organizationid": "29f9e343-0e12-4d21-a7ec-455afe88b257",
    "lastname": "So (Sample Data)",
    "isemailaddressapprovedbyo365admin": False,
    "invitestatuscode": 0,
    "yomifullname": "David So (Sample Data)",
    "isdisabled": True,
    "address2_addressid": "40284624-7726-4be5-83dc-55e7bb0317ea",
    "_defaultmailbox_value": "622476fd-32d9-e611-8119-c4346bdc3cc1",
    "address1_country": "US",
    "preferredaddresscode": 1,
    "islicensed": True,
    "ownerid": "9025bbf4-3430-4d0c-bfcf-16f0bf7fbc80",
    "_createdby_value": None,
    "nickname": None,
    "azureactivedirectoryobjectid": None,
    "address2_stateorprovince": None,
    "applicationiduri": None,
    "address1_county": None,
    "address2_country": None,
    "address2_postofficebox": None,
    "yammeruserid": None,
    "title": None,
    "employeeid": None,
    "_territoryid_value": None,
    "jobtitle": None,
    "skills": None,
    "address2_composite": None,
    "address1_postalcode": None,
    "entityimage": None,
    "address1_line3": None,
    "disabledreason": None,
    "address2_utcoffset": None,
    "address1_line2": None,
    "address1_city": None,
    "personalemailaddress": None,
    "address1_telephone2": None,
    "_createdonbehalfby_value": None,
    "address1_longitude": None,
    "sharepointemailaddress": None,
    "yomifirstname": None,
    "exchangerate": None,
    "yomimiddlename": None,
    "address2_line2": None,
    "address1_line1": None,
    "address1_telephone1": None,
    "traversedpath": None,
    "yomilastname": None,
    "address2_latitude": None,
    "mobilephone": None,
    "address2_fax": None,
    "address1_latitude": None,
    "entityimage_timestamp": None,
    "photourl": None,
    "_siteid_value": None,
    "_transactioncurrencyid_value": None,
    "passportlo": None,
    "_mobileofflineprofileid_value": None,
    "address1_name": None,
    "address2_telephone2": None,
    "_parentsystemuserid_value": None,
    "stageid": None,
    "address2_longitude": None,
    "salutation": None,
    "yammeremailaddress": None,
    "address2_city": None,
    "middlename": None,
    "entityimageid": None,
    "address2_county": None,
    "address2_line1": None,
    "address2_upszone": None,
    "address1_utcoffset": None,
    "_positionid_value": None,
    "passporthi": None,
    "address1_telephone3": None,
    "address2_postalcode": None,
    "address2_telephone1": None,
    "entityimage_url": None,
    "processid": None,
    "governmentid": None,
    "_modifiedonbehalfby_value": None,
    "address2_line3": None,
    "utcconversiontimezonecode": None,
    "homephone": None,
    "address2_name": None,
    "overriddencreatedon": None,
    "address1_upszone": None,
    "importsequencenumber": None,
    "mobilealertemail": None,
    "address1_fax": None,
    "address2_telephone3": None,
    "address1_postofficebox": None,
    "address1_stateorprovince": None,
    "timezoneruleversionnumber": None,
    "applicationid": None,
}

SYSTEMUSER_COLUMNS: tuple[str, ...] = tuple(DAVID_SO_RECORD)

GUID = "guid"
INT = "int"
FLOAT = "float"
BOOL = "bool"
DATETIME = "datetime"
STRING = "string"

# Each column type as an OData Edm type ($metadata, query error messages) and as a
# Dataverse AttributeType (EntityDefinitions(...)/Attributes); lookups are "Lookup".
EDM_TYPES: dict[str, str] = {
    GUID: "Edm.Guid",
    INT: "Edm.Int32",
    FLOAT: "Edm.Double",
    BOOL: "Edm.Boolean",
    DATETIME: "Edm.DateTimeOffset",
    STRING: "Edm.String",
}
ATTRIBUTE_TYPES: dict[str, str] = {
    GUID: "Uniqueidentifier",
    INT: "Integer",
    FLOAT: "Double",
    BOOL: "Boolean",
    DATETIME: "DateTime",
    STRING: "String",
}

_GUID_COLUMNS = {
    "systemuserid",
    "address1_addressid",
    "_queueid_value",
    "_calendarid_value",
    "_businessunitid_value",
    "_modifiedby_value",
    "organizationid",
    "ownerid",
    "_createdby_value",
    "azureactivedirectoryobjectid",
    "address2_addressid",
    "_defaultmailbox_value",
    "_territoryid_value",
    "_createdonbehalfby_value",
    "entityimageid",
    "_siteid_value",
    "_transactioncurrencyid_value",
    "_mobileofflineprofileid_value",
    "_parentsystemuserid_value",
    "stageid",
    "_positionid_value",
    "processid",
    "_modifiedonbehalfby_value",
    "applicationid",
}
_INT_COLUMNS = {
    "accessmode",
    "address2_shippingmethodcode",
    "incomingemaildeliverymethod",
    "address1_addresstypecode",
    "caltype",
    "address1_shippingmethodcode",
    "outgoingemaildeliverymethod",
    "emailrouteraccessapproval",
    "versionnumber",
    "address2_addresstypecode",
    "preferredphonecode",
    "preferredemailcode",
    "userlicensetype",
    "invitestatuscode",
    "preferredaddresscode",
    "address2_utcoffset",
    "utcconversiontimezonecode",
    "address1_utcoffset",
    "importsequencenumber",
    "timezoneruleversionnumber",
    "entityimage_timestamp",
    "passportlo",
    "passporthi",
}
_FLOAT_COLUMNS = {
    "address1_longitude",
    "address1_latitude",
    "address2_latitude",
    "address2_longitude",
    "exchangerate",
}
_BOOL_COLUMNS = {
    "issyncwithdirectory",
    "isintegrationuser",
    "displayinserviceviews",
    "defaultfilterspopulated",
    "setupuser",
    "isemailaddressapprovedbyo365admin",
    "isdisabled",
    "islicensed",
}
_DATETIME_COLUMNS = {"createdon", "modifiedon", "overriddencreatedon"}


def _type_of(col: str) -> str:
    if col in _GUID_COLUMNS:
        return GUID
    if col in _INT_COLUMNS:
        return INT
    if col in _FLOAT_COLUMNS:
        return FLOAT
    if col in _BOOL_COLUMNS:
        return BOOL
    if col in _DATETIME_COLUMNS:
        return DATETIME
    return STRING


SYSTEMUSER_TYPES: dict[str, str] = {c: _type_of(c) for c in SYSTEMUSER_COLUMNS}

BUSINESSUNIT_COLUMNS: tuple[str, ...] = (
    "businessunitid",
    "name",
    "divisionname",
    "emailaddress",
    "isdisabled",
    "_parentbusinessunitid_value",
    "organizationid",
    "createdon",
    "modifiedon",
    "versionnumber",
)
BUSINESSUNIT_TYPES: dict[str, str] = {
    "businessunitid": GUID,
    "name": STRING,
    "divisionname": STRING,
    "emailaddress": STRING,
    "isdisabled": BOOL,
    "_parentbusinessunitid_value": GUID,
    "organizationid": GUID,
    "createdon": DATETIME,
    "modifiedon": DATETIME,
    "versionnumber": INT,
}

CONTACT_COLUMNS: tuple[str, ...] = (
    "contactid",
    "fullname",
    "firstname",
    "lastname",
    "emailaddress1",
    "telephone1",
    "jobtitle",
    "_parentcustomerid_value",
    "_ownerid_value",
    "statecode",
    "statuscode",
    "createdon",
    "modifiedon",
    "versionnumber",
    "mobilephone",
    "address1_city",
    "address1_country",
    "employeeid",
    "department",
)
CONTACT_TYPES: dict[str, str] = {
    "mobilephone": STRING,
    "address1_city": STRING,
    "address1_country": STRING,
    "employeeid": STRING,
    "department": STRING,
    "contactid": GUID,
    "fullname": STRING,
    "firstname": STRING,
    "lastname": STRING,
    "emailaddress1": STRING,
    "telephone1": STRING,
    "jobtitle": STRING,
    "_parentcustomerid_value": GUID,
    "_ownerid_value": GUID,
    "statecode": INT,
    "statuscode": INT,
    "createdon": DATETIME,
    "modifiedon": DATETIME,
    "versionnumber": INT,
}
