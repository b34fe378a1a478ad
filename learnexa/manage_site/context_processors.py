from .panels import banners, navigation


def site_banners(request):
    """What needs a site admin's attention, and where integrations lead, on every page."""
    user = getattr(request, "user", None)
    if not (user and user.is_authenticated and user.is_site_admin):
        return {}
    return {
        "site_banners": [b for provider in banners for b in provider(user.company)],
        "site_navigation": [link for provider in navigation for link in provider()],
    }
