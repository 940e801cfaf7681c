"""Rule G2: the regions the product ships with (operators add more in the admin)."""

from django.db import migrations

ZRS = [
    ("cn-hangzhou", "China (Hangzhou)"),
    ("cn-shanghai", "China (Shanghai)"),
    ("cn-beijing", "China (Beijing)"),
    ("cn-zhangjiakou", "China (Zhangjiakou)"),
    ("cn-wulanchabu", "China (Ulanqab)"),
    ("cn-shenzhen", "China (Shenzhen)"),
    ("cn-hongkong", "Hong Kong (China)"),
    ("ap-northeast-1", "Japan (Tokyo)"),
    ("ap-southeast-1", "Singapore"),
    ("ap-southeast-5", "Indonesia (Jakarta)"),
    ("eu-central-1", "Germany (Frankfurt)"),
    ("ap-southeast-3", "Malaysia (Kuala Lumpur)"),
]
LRS = [
    ("cn-qingdao", "China (Qingdao)"),
    ("cn-huhehaote", "China (Hohhot)"),
    ("cn-chengdu", "China (Chengdu)"),
    ("us-west-1", "US (Silicon Valley)"),
    ("us-east-1", "US (Virginia)"),
    ("eu-west-1", "UK (London)"),
    ("me-east-1", "UAE (Dubai)"),
]


def seed_regions(apps, schema_editor):
    Region = apps.get_model("console", "Region")
    for position, (code, name, zrs) in enumerate([(c, n, True) for c, n in ZRS] + [(c, n, False) for c, n in LRS]):
        Region.objects.update_or_create(
            code=code,
            defaults={"name": name, "supports_zrs": zrs, "supports_cross_region": True, "position": position * 10},
        )


class Migration(migrations.Migration):
    dependencies = [("console", "0001_initial")]
    operations = [migrations.RunPython(seed_regions, migrations.RunPython.noop)]
